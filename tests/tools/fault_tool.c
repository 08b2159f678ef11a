/* fault_tool: one libiscsi session that runs a list of commands against a LUN
 * and prints, for each, the status and the sense data the target answered,
 * INFORMATION field included (what iscsi-* tools do not show). For the fault
 * injection tests (tests/integration/test_faults.sh).
 *
 *   fault_tool [-i INITIATOR] URL OP...
 *     read:LBA:BLOCKS      READ(16)
 *     write:LBA:BLOCKS     WRITE(16) of a pattern (byte i of block b: b + i)
 *     sync                 SYNCHRONIZE CACHE(16) of the whole LUN
 *     wait                 reads a line from stdin first (the test's cue)
 *     fill:LBA:BLOCKS:N    up to N WRITE(16)s of BLOCKS each from LBA on, until
 *                          one is not GOOD; prints how many were, and that one
 *     lureset              LOGICAL UNIT RESET of the LUN (every other nexus
 *                          then gets a unit attention)
 *     abort:LBA:BLOCKS:MS  READ(16) that must not be answered within MS
 *                          milliseconds; it is then aborted with ABORT TASK
 *                          (as an initiator whose command timed out)
 *
 * Each op prints one line, e.g.
 *   read 100 8: GOOD
 *   read 100 8: CHECK CONDITION key 0x03 asc 0x11 ascq 0x00 info 104
 *   abort 100 8: no answer in 300 ms; ABORT TASK sent
 *   abort 100 8: ABORT TASK response 0 after 1702 ms; the READ got no answer
 *   fill 0 8: 1021 GOOD
 *   write 8168 8: CHECK CONDITION key 0x07 asc 0x27 ascq 0x07 info 8168
 * Exit status: 0 every op ran (whatever its status), 2 usage, 3 iSCSI error.
 */
#include <errno.h>
#include <inttypes.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tool_login.h"

struct done_state {
  int done;
  int status;
  struct scsi_task* task;
  uint32_t tmf_response; /* of a task management function */
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the event loop until *done or timeout_ms passed (< 0: no limit).
 * 0: done; 1: timed out; -1: the session failed. */
static int service_until(struct iscsi_context* iscsi, const int* done, int timeout_ms) {
  const int64_t deadline = now_ms() + timeout_ms;
  while (!*done) {
    int wait = 1000;
    if (timeout_ms >= 0) {
      int64_t left = deadline - now_ms();
      if (left <= 0) return 1;
      if (left < wait) wait = (int)left;
    }
    struct pollfd p = {iscsi_get_fd(iscsi), (short)iscsi_which_events(iscsi), 0};
    int r = poll(&p, 1, wait);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (iscsi_service(iscsi, r > 0 ? p.revents : 0) < 0) {
      fprintf(stderr, "iscsi_service: %s\n", iscsi_get_error(iscsi));
      return -1;
    }
  }
  return 0;
}

static void command_done(struct iscsi_context* iscsi, int status, void* data, void* priv) {
  (void)iscsi;
  (void)data;
  struct done_state* s = priv;
  s->status = status;
  s->done = 1;
}

/* The INFORMATION field of the sense data (fixed or descriptor format), or
 * -1 when there is none. libiscsi keeps the response's data segment (sense
 * length, then the sense bytes) in datain. */
static int64_t sense_information(const struct scsi_task* t) {
  if (t->datain.size < 2 + 8) return -1;
  const unsigned char* s = t->datain.data + 2;
  const int len = t->datain.size - 2;
  const int code = s[0] & 0x7f;
  if ((code == 0x70 || code == 0x71) && len >= 7 && (s[0] & 0x80)) {
    return ((int64_t)s[3] << 24) | (s[4] << 16) | (s[5] << 8) | s[6];
  }
  if (code == 0x72 || code == 0x73) {
    for (int at = 8; at + 12 <= len; at += 2 + s[at + 1]) {
      if (s[at] != 0x00) continue;
      int64_t v = 0;
      for (int i = 0; i < 8; i++) v = (v << 8) | s[at + 4 + i];
      return v;
    }
  }
  return -1;
}

static void tmf_done(struct iscsi_context* iscsi, int status, void* data, void* priv) {
  struct done_state* s = priv;
  s->tmf_response = data != NULL ? *(uint32_t*)data : 0xffffffffu;
  command_done(iscsi, status, data, priv);
}

static void print_result(const char* what, const struct done_state* s) {
  if (s->status == SCSI_STATUS_GOOD) {
    printf("%s: GOOD\n", what);
  } else if (s->status == SCSI_STATUS_CHECK_CONDITION) {
    const struct scsi_task* t = s->task;
    printf("%s: CHECK CONDITION key 0x%02x asc 0x%02x ascq 0x%02x info %" PRId64 "\n", what,
           (unsigned)t->sense.key, (unsigned)(t->sense.ascq >> 8), (unsigned)(t->sense.ascq & 0xff),
           sense_information(t));
  } else {
    printf("%s: status 0x%x\n", what, (unsigned)s->status);
  }
  fflush(stdout);
}

static int read_capacity(struct iscsi_context* iscsi, int lun, uint32_t* bs) {
  struct scsi_task* t = iscsi_readcapacity16_sync(iscsi, lun);
  if (t == NULL || t->status != SCSI_STATUS_GOOD) {
    fprintf(stderr, "READ CAPACITY(16) failed: %s\n", iscsi_get_error(iscsi));
    if (t) scsi_free_scsi_task(t);
    return -1;
  }
  struct scsi_readcapacity16* rc = scsi_datain_unmarshall(t);
  if (rc == NULL) {
    scsi_free_scsi_task(t);
    return -1;
  }
  *bs = rc->block_length;
  scsi_free_scsi_task(t);
  return 0;
}

/* Runs one command to its end; prints its result. 0, or -1 when the session failed. */
static int quiet_good = 0; /* fill: print only the command that was not GOOD */

static int run_command(struct iscsi_context* iscsi, const char* what, struct done_state* s) {
  if (s->task == NULL) {
    fprintf(stderr, "%s: cannot send: %s\n", what, iscsi_get_error(iscsi));
    return -1;
  }
  if (service_until(iscsi, &s->done, -1) != 0) return -1;
  if (!(quiet_good && s->status == SCSI_STATUS_GOOD)) print_result(what, s);
  scsi_free_scsi_task(s->task);
  return 0;
}

/* WRITE(16) of blocks at lba, a pattern of its LBAs. */
static int run_write(struct iscsi_context* iscsi, int lun, uint64_t lba, uint32_t blocks,
                     uint32_t bs, struct done_state* s) {
  char what[128];
  snprintf(what, sizeof what, "write %" PRIu64 " %u", lba, blocks);
  unsigned char* data = malloc((size_t)blocks * bs);
  if (data == NULL) return -1;
  for (size_t b = 0; b < blocks; b++)
    for (size_t j = 0; j < bs; j++) data[b * bs + j] = (unsigned char)(lba + b + j);
  s->task = iscsi_write16_task(iscsi, lun, lba, data, blocks * bs, (int)bs, 0, 0, 0, 0, 0,
                               command_done, s);
  int rc = run_command(iscsi, what, s);
  free(data);
  return rc;
}

/* A READ that the target is expected to hold longer than timeout_ms: on
 * timeout it is aborted as an initiator would. */
static int run_abort(struct iscsi_context* iscsi, int lun, uint64_t lba, uint32_t blocks,
                     uint32_t bs, int timeout_ms, const char* what) {
  struct done_state s = {0, 0, NULL, 0};
  s.task =
      iscsi_read16_task(iscsi, lun, lba, blocks * bs, (int)bs, 0, 0, 0, 0, 0, command_done, &s);
  if (s.task == NULL) return -1;
  int r = service_until(iscsi, &s.done, timeout_ms);
  if (r < 0) return -1;
  if (r == 0) {
    printf("%s: answered before the timeout of %d ms\n", what, timeout_ms);
    print_result(what, &s);
    scsi_free_scsi_task(s.task);
    return 0;
  }
  struct done_state tmf = {0, 0, NULL, 0};
  if (iscsi_task_mgmt_abort_task_async(iscsi, s.task, tmf_done, &tmf) != 0) {
    fprintf(stderr, "ABORT TASK: %s\n", iscsi_get_error(iscsi));
    return -1;
  }
  printf("%s: no answer in %d ms; ABORT TASK sent\n", what, timeout_ms);
  fflush(stdout);
  const int64_t sent = now_ms();
  if (service_until(iscsi, &tmf.done, 30000) != 0) {
    fprintf(stderr, "no answer to ABORT TASK\n");
    return -1;
  }
  if (tmf.status != SCSI_STATUS_GOOD) {
    fprintf(stderr, "ABORT TASK failed: %s\n", iscsi_get_error(iscsi));
    return -1;
  }
  /* Until the abort is answered libiscsi still matches answers to the READ:
   * one from the target would have completed it with its status. Then it
   * cancels the READ (callback with SCSI_STATUS_CANCELLED); if it did not,
   * it is cancelled here, so nothing can reach this stack frame later. */
  const int answered = s.done && s.status != SCSI_STATUS_CANCELLED;
  printf("%s: ABORT TASK response %u after %lld ms; the READ %s\n", what,
         (unsigned)tmf.tmf_response, (long long)(now_ms() - sent),
         answered ? "was answered" : "got no answer");
  fflush(stdout);
  if (!s.done) iscsi_scsi_cancel_task(iscsi, s.task);
  scsi_free_scsi_task(s.task);
  return 0;
}

int main(int argc, char** argv) {
  const char* initiator = "iqn.2025-01.com.example:fault-tool";
  int opt;
  while ((opt = getopt(argc, argv, "i:")) != -1) {
    if (opt == 'i') {
      initiator = optarg;
    } else {
      fprintf(stderr, "usage: fault_tool [-i INITIATOR] URL OP...\n");
      return 2;
    }
  }
  if (optind + 1 >= argc) {
    fprintf(stderr, "usage: fault_tool [-i INITIATOR] URL OP...\n");
    return 2;
  }
  int lun = 0;
  struct iscsi_context* iscsi = tool_login(initiator, argv[optind], &lun, 0);
  if (iscsi == NULL) return 3;
  uint32_t bs = 0;
  if (read_capacity(iscsi, lun, &bs) != 0) return 3;

  for (int i = optind + 1; i < argc; i++) {
    const char* op = argv[i];
    unsigned long long lba = 0;
    unsigned blocks = 0;
    int ms = 0;
    char what[128];
    struct done_state s = {0, 0, NULL, 0};
    if (strcmp(op, "sync") == 0) {
      s.task = iscsi_synchronizecache16_task(iscsi, lun, 0, 0, 0, 0, command_done, &s);
      if (run_command(iscsi, "sync", &s) != 0) return 3;
    } else if (strcmp(op, "lureset") == 0) {
      int r = iscsi_task_mgmt_lun_reset_sync(iscsi, lun);
      printf("lureset: %s\n", r == 0 ? "done" : iscsi_get_error(iscsi));
      if (r != 0) return 3;
    } else if (strcmp(op, "wait") == 0) {
      char line[64];
      if (fgets(line, sizeof line, stdin) == NULL) {
        fprintf(stderr, "wait: no cue on stdin\n");
        return 3;
      }
    } else if (sscanf(op, "read:%llu:%u", &lba, &blocks) == 2) {
      snprintf(what, sizeof what, "read %llu %u", lba, blocks);
      s.task =
          iscsi_read16_task(iscsi, lun, lba, blocks * bs, (int)bs, 0, 0, 0, 0, 0, command_done, &s);
      if (run_command(iscsi, what, &s) != 0) return 3;
    } else if (sscanf(op, "write:%llu:%u", &lba, &blocks) == 2) {
      if (run_write(iscsi, lun, lba, blocks, bs, &s) != 0) return 3;
    } else if (sscanf(op, "fill:%llu:%u:%d", &lba, &blocks, &ms) == 3) {
      int good = 0;
      quiet_good = 1;
      for (; good < ms; good++) {
        struct done_state w = {0, 0, NULL, 0};
        if (run_write(iscsi, lun, lba + (uint64_t)good * blocks, blocks, bs, &w) != 0) return 3;
        if (w.status != SCSI_STATUS_GOOD) break;
      }
      quiet_good = 0;
      /* After the failed write's own line: how far it got. */
      printf("fill %llu %u: %d GOOD\n", lba, blocks, good);
      fflush(stdout);
    } else if (sscanf(op, "abort:%llu:%u:%d", &lba, &blocks, &ms) == 3) {
      snprintf(what, sizeof what, "abort %llu %u", lba, blocks);
      if (run_abort(iscsi, lun, lba, blocks, bs, ms, what) != 0) return 3;
    } else {
      fprintf(stderr, "unknown op '%s'\n", op);
      return 2;
    }
  }
  iscsi_logout_sync(iscsi);
  iscsi_destroy_context(iscsi);
  return 0;
}
