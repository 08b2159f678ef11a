/* pr_tool: persistent reservations from a libiscsi initiator, for the
 * integration tests (libiscsi-bin has no PR command line tool).
 *
 *   pr_tool [-i INITIATOR] URL register KEY [aptpl]
 *       PERSISTENT RESERVE OUT, REGISTER AND IGNORE EXISTING KEY with KEY as
 *       the new key (0 unregisters), APTPL set when "aptpl" is given.
 *   pr_tool [-i INITIATOR] URL reserve KEY TYPE
 *   pr_tool [-i INITIATOR] URL release KEY TYPE
 *   pr_tool [-i INITIATOR] URL clear KEY
 *   pr_tool [-i INITIATOR] URL read-keys
 *       prints "GENERATION <n>" and one "KEY 0x<16 hex digits>" per key.
 *   pr_tool [-i INITIATOR] URL read-reservation
 *       prints "RESERVATION 0x<key> TYPE <type>" or "RESERVATION NONE".
 *   pr_tool [-i INITIATOR] URL write
 *       WRITE(10) of one block at LBA 0; prints "WRITE GOOD",
 *       "WRITE RESERVATION_CONFLICT" or "WRITE STATUS <status>".
 *
 * KEY is a number in C syntax (0x... for hex); TYPE is the SPC-4 type code.
 * Exit status: 0 done, 1 the target refused a PERSISTENT RESERVE command,
 * 2 usage, 3 iSCSI error.
 */
#include <getopt.h>
#include <inttypes.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool_login.h"

static int usage(void) {
  fprintf(stderr,
          "usage: pr_tool [-i INITIATOR] URL register KEY [aptpl] | reserve KEY TYPE |\n"
          "       release KEY TYPE | clear KEY | read-keys | read-reservation | write\n");
  return 2;
}

static int prout(struct iscsi_context* iscsi, int lun, enum scsi_persistent_out_sa sa, uint64_t key,
                 uint64_t sark, int type, int aptpl) {
  struct scsi_persistent_reserve_out_basic params;
  memset(&params, 0, sizeof params);
  params.reservation_key = key;
  params.service_action_reservation_key = sark;
  params.aptpl = (uint8_t)aptpl;
  struct scsi_task* task = iscsi_persistent_reserve_out_sync(
      iscsi, lun, sa, SCSI_PERSISTENT_RESERVE_SCOPE_LU, type, &params);
  if (task == NULL) {
    fprintf(stderr, "PERSISTENT RESERVE OUT: %s\n", iscsi_get_error(iscsi));
    return 3;
  }
  int rc = 0;
  if (task->status != SCSI_STATUS_GOOD) {
    fprintf(stderr, "PERSISTENT RESERVE OUT: status 0x%02x %s\n", task->status,
            iscsi_get_error(iscsi));
    rc = 1;
  }
  scsi_free_scsi_task(task);
  return rc;
}

static int prin(struct iscsi_context* iscsi, int lun, enum scsi_persistent_in_sa sa) {
  struct scsi_task* task = iscsi_persistent_reserve_in_sync(iscsi, lun, sa, 8192);
  if (task == NULL) {
    fprintf(stderr, "PERSISTENT RESERVE IN: %s\n", iscsi_get_error(iscsi));
    return 3;
  }
  if (task->status != SCSI_STATUS_GOOD) {
    fprintf(stderr, "PERSISTENT RESERVE IN: status 0x%02x %s\n", task->status,
            iscsi_get_error(iscsi));
    scsi_free_scsi_task(task);
    return 1;
  }
  void* data = scsi_datain_unmarshall(task);
  if (data == NULL) {
    fprintf(stderr, "PERSISTENT RESERVE IN: cannot decode the parameter data\n");
    scsi_free_scsi_task(task);
    return 3;
  }
  if (sa == SCSI_PERSISTENT_RESERVE_READ_KEYS) {
    struct scsi_persistent_reserve_in_read_keys* rk = data;
    printf("GENERATION %" PRIu32 "\n", rk->prgeneration);
    for (int i = 0; i < rk->num_keys; i++) printf("KEY 0x%016" PRIx64 "\n", rk->keys[i]);
  } else {
    struct scsi_persistent_reserve_in_read_reservation* rr = data;
    if (rr->reserved) {
      printf("RESERVATION 0x%016" PRIx64 " TYPE %u\n", rr->reservation_key, (unsigned)rr->pr_type);
    } else {
      printf("RESERVATION NONE\n");
    }
  }
  scsi_free_scsi_task(task);
  return 0;
}

static int write_block(struct iscsi_context* iscsi, int lun) {
  struct scsi_task* cap = iscsi_readcapacity10_sync(iscsi, lun, 0, 0);
  if (cap == NULL || cap->status != SCSI_STATUS_GOOD) {
    fprintf(stderr, "READ CAPACITY(10) failed: %s\n", iscsi_get_error(iscsi));
    if (cap) scsi_free_scsi_task(cap);
    return 3;
  }
  struct scsi_readcapacity10* rc10 = scsi_datain_unmarshall(cap);
  const uint32_t bs = rc10 != NULL ? rc10->block_size : 512;
  scsi_free_scsi_task(cap);
  unsigned char* buf = calloc(1, bs);
  if (buf == NULL) return 3;
  memset(buf, 0x5a, bs);
  struct scsi_task* task = iscsi_write10_sync(iscsi, lun, 0, buf, bs, bs, 0, 0, 0, 0, 0);
  free(buf);
  if (task == NULL) {
    fprintf(stderr, "WRITE(10): %s\n", iscsi_get_error(iscsi));
    return 3;
  }
  if (task->status == SCSI_STATUS_GOOD) {
    printf("WRITE GOOD\n");
  } else if (task->status == SCSI_STATUS_RESERVATION_CONFLICT) {
    printf("WRITE RESERVATION_CONFLICT\n");
  } else {
    printf("WRITE STATUS 0x%02x\n", task->status);
  }
  scsi_free_scsi_task(task);
  return 0;
}

int main(int argc, char** argv) {
  const char* initiator = "iqn.2025-01.org.ringtgt:pr-tool";
  int opt;
  while ((opt = getopt(argc, argv, "i:")) != -1) {
    if (opt == 'i') {
      initiator = optarg;
    } else {
      return usage();
    }
  }
  if (argc - optind < 2) return usage();
  const char* url = argv[optind];
  const char* cmd = argv[optind + 1];
  char** args = &argv[optind + 2];
  const int nargs = argc - optind - 2;

  int lun = 0;
  /* Registrations belong to the initiator port (name + ISID): a fixed ISID
   * makes every run the same port. */
  struct iscsi_context* iscsi = tool_login(initiator, url, &lun, 0x5a5a5a);
  if (iscsi == NULL) return 3;
  int rc;
  if (strcmp(cmd, "register") == 0 && (nargs == 1 || nargs == 2)) {
    const int aptpl = nargs == 2 && strcmp(args[1], "aptpl") == 0;
    rc = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0,
               strtoull(args[0], NULL, 0), 0, aptpl);
  } else if (strcmp(cmd, "reserve") == 0 && nargs == 2) {
    rc = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_RESERVE, strtoull(args[0], NULL, 0), 0,
               atoi(args[1]), 0);
  } else if (strcmp(cmd, "release") == 0 && nargs == 2) {
    rc = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_RELEASE, strtoull(args[0], NULL, 0), 0,
               atoi(args[1]), 0);
  } else if (strcmp(cmd, "clear") == 0 && nargs == 1) {
    rc = prout(iscsi, lun, SCSI_PERSISTENT_RESERVE_CLEAR, strtoull(args[0], NULL, 0), 0, 0, 0);
  } else if (strcmp(cmd, "read-keys") == 0 && nargs == 0) {
    rc = prin(iscsi, lun, SCSI_PERSISTENT_RESERVE_READ_KEYS);
  } else if (strcmp(cmd, "read-reservation") == 0 && nargs == 0) {
    rc = prin(iscsi, lun, SCSI_PERSISTENT_RESERVE_READ_RESERVATION);
  } else if (strcmp(cmd, "write") == 0 && nargs == 0) {
    rc = write_block(iscsi, lun);
  } else {
    rc = usage();
  }
  iscsi_logout_sync(iscsi);
  iscsi_destroy_context(iscsi);
  return rc;
}
