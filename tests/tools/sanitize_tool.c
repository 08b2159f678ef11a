/* A libiscsi initiator for test_sanitize_restart.sh: starts a SANITIZE and
 * watches it.
 *
 *   sanitize_tool URL overwrite BYTE   SANITIZE OVERWRITE, IMMED, one pass of BYTE
 *   sanitize_tool URL block-erase      SANITIZE BLOCK ERASE, IMMED
 *   sanitize_tool URL tur              TEST UNIT READY once
 *   sanitize_tool URL wait SECONDS     TEST UNIT READY until GOOD (at most SECONDS)
 *   sanitize_tool URL read LBA         READ(16) of one 512-byte block
 *
 * Each prints "GOOD" or "SENSE KEY/ASC/ASCQ" (hex) for its command; read
 * prints the block's first and last byte after GOOD, wait the last sense it
 * saw before GOOD. Exit status: 0 when the command ran, 2 when it could not. */
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool_login.h"

static const char* kInitiator = "iqn.2025-01.org.ringtgt:sanitize-tool";

/* Prints the outcome of task (NULL: transport failure) and frees it. */
static int report(struct iscsi_context* iscsi, struct scsi_task* task, const char* what) {
  if (task == NULL) {
    fprintf(stderr, "%s: %s\n", what, iscsi_get_error(iscsi));
    return -1;
  }
  int good = task->status == SCSI_STATUS_GOOD;
  if (good) {
    printf("GOOD\n");
  } else if (task->status == SCSI_STATUS_CHECK_CONDITION) {
    printf("SENSE %x/%02x/%02x\n", task->sense.key, (task->sense.ascq >> 8) & 0xff,
           task->sense.ascq & 0xff);
  } else {
    printf("STATUS %02x\n", task->status);
  }
  return good;
}

static int overwrite(struct iscsi_context* iscsi, int lun, unsigned byte) {
  unsigned char params[4 + 512];
  memset(params, 0, sizeof params);
  params[0] = 0x01; /* one pass */
  params[2] = 0x02; /* INITIALIZATION PATTERN LENGTH 512 */
  memset(&params[4], (int)byte, 512);
  struct iscsi_data d = {.size = sizeof params, .data = params};
  struct scsi_task* t = iscsi_sanitize_sync(iscsi, lun, 1, 0, SCSI_SANITIZE_OVERWRITE,
                                            (int)sizeof params, &d);
  int r = report(iscsi, t, "SANITIZE");
  if (t) scsi_free_scsi_task(t);
  return r < 0 ? 2 : 0;
}

static int wait_ready(struct iscsi_context* iscsi, int lun, int seconds) {
  time_t end = time(NULL) + seconds;
  char last[64] = "none";
  while (time(NULL) < end) {
    struct scsi_task* t = iscsi_testunitready_sync(iscsi, lun);
    if (t == NULL) {
      fprintf(stderr, "TEST UNIT READY: %s\n", iscsi_get_error(iscsi));
      return 2;
    }
    if (t->status == SCSI_STATUS_GOOD) {
      printf("GOOD after %s\n", last);
      scsi_free_scsi_task(t);
      return 0;
    }
    snprintf(last, sizeof last, "%x/%02x/%02x", t->sense.key, (t->sense.ascq >> 8) & 0xff,
             t->sense.ascq & 0xff);
    scsi_free_scsi_task(t);
    usleep(100 * 1000); /* polling a device that reports progress, as sg_requests -p does */
  }
  printf("TIMEOUT after %s\n", last);
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: sanitize_tool URL overwrite BYTE|block-erase|tur|wait S|read LBA\n");
    return 2;
  }
  int lun = 0;
  struct iscsi_context* iscsi = tool_login(kInitiator, argv[1], &lun, 0);
  if (iscsi == NULL) return 2;
  const char* cmd = argv[2];
  int rc = 2;
  if (strcmp(cmd, "overwrite") == 0 && argc > 3) {
    rc = overwrite(iscsi, lun, (unsigned)strtoul(argv[3], NULL, 0));
  } else if (strcmp(cmd, "block-erase") == 0) {
    struct scsi_task* t = iscsi_sanitize_block_erase_sync(iscsi, lun, 1, 0);
    rc = report(iscsi, t, "SANITIZE") < 0 ? 2 : 0;
    if (t) scsi_free_scsi_task(t);
  } else if (strcmp(cmd, "tur") == 0) {
    struct scsi_task* t = iscsi_testunitready_sync(iscsi, lun);
    rc = report(iscsi, t, "TEST UNIT READY") < 0 ? 2 : 0;
    if (t) scsi_free_scsi_task(t);
  } else if (strcmp(cmd, "wait") == 0 && argc > 3) {
    rc = wait_ready(iscsi, lun, atoi(argv[3]));
  } else if (strcmp(cmd, "read") == 0 && argc > 3) {
    uint64_t lba = strtoull(argv[3], NULL, 0);
    struct scsi_task* t = iscsi_read16_sync(iscsi, lun, lba, 512, 512, 0, 0, 0, 0, 0);
    int r = report(iscsi, t, "READ(16)");
    if (r > 0 && t->datain.size >= 512) printf("%02x %02x\n", t->datain.data[0], t->datain.data[511]);
    rc = r < 0 ? 2 : 0;
    if (t) scsi_free_scsi_task(t);
  } else {
    fprintf(stderr, "unknown command %s\n", cmd);
  }
  iscsi_logout_sync(iscsi);
  iscsi_destroy_context(iscsi);
  return rc;
}
