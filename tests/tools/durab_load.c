/* durab_load: every medium-changing command of ringtgt, from many sessions at
 * once on overlapping blocks, for the durability check under load
 * (tests/integration/test_durability_check.sh).
 *
 *   durab_load URL FIRST_LBA BLOCKS SECONDS SESSIONS SEED
 *
 * Each session (its own thread, connection and ISID) issues, until SECONDS
 * have passed, commands picked at random on 1..8 blocks of [FIRST_LBA,
 * FIRST_LBA + BLOCKS): WRITE(6/10/12/16) with and without FUA, WRITE AND
 * VERIFY(10/16), WRITE SAME(10/16) with a pattern, with zeroes and with the
 * UNMAP bit, UNMAP, COMPARE AND WRITE (of what it just read) and SYNCHRONIZE
 * CACHE(10/16); then one SYNCHRONIZE CACHE. The LUN must be thin (UNMAP).
 * Prints one line "OPS name=count ..." per run. MISCOMPARE (another session
 * wrote the block between the read and the COMPARE AND WRITE) and BUSY are
 * expected under overlap and counted; any other failure is an error.
 *
 * Exit status: 0 no errors, 1 errors, 2 usage, 3 login failed.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "tool_login.h"

enum op {
  op_write6,
  op_write10,
  op_write12,
  op_write16_fua,
  op_write_verify10,
  op_write_verify16,
  op_write_same_pattern,
  op_write_same_zero,
  op_write_same_unmap,
  op_unmap,
  op_compare_and_write,
  op_sync10,
  op_sync16,
  op_count
};
static const char* const op_names[op_count] = {
    "write6",      "write10",           "write12",
    "write16_fua", "write_verify10",    "write_verify16",
    "write_same",  "write_same_zero",   "write_same_unmap",
    "unmap",       "compare_and_write", "sync10",
    "sync16"};

enum { kMaxBlocks = 8, kBlockSize = 512 };

struct session {
  pthread_t thread;
  const char* url;
  unsigned index;
  uint64_t first_lba, blocks;
  double seconds;
  unsigned seed;
  unsigned long done[op_count];
  unsigned long miscompare, busy, errors;
  int login_failed;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(unsigned char* buf, size_t n, unsigned* seed) {
  for (size_t i = 0; i < n; ++i) buf[i] = (unsigned char)rand_r(seed);
}

/* WRITE(6) has no libiscsi helper: a raw CDB. */
static struct scsi_task* write6(struct iscsi_context* iscsi, int lun, uint32_t lba,
                                unsigned char* data, uint32_t blocks) {
  unsigned char cdb[6] = {0x0a,
                          (unsigned char)((lba >> 16) & 0x1f),
                          (unsigned char)(lba >> 8),
                          (unsigned char)lba,
                          (unsigned char)blocks,
                          0};
  struct scsi_task* task = scsi_create_task(6, cdb, SCSI_XFER_WRITE, blocks * kBlockSize);
  if (task == NULL) return NULL;
  struct iscsi_data d = {.size = blocks * kBlockSize, .data = data};
  if (iscsi_scsi_command_sync(iscsi, lun, task, &d) == NULL) {
    scsi_free_scsi_task(task);
    return NULL;
  }
  return task;
}

/* Counts the outcome; returns the task's status (or -1: no task). */
static void outcome(struct session* s, struct iscsi_context* iscsi, enum op op,
                    struct scsi_task* task) {
  if (task == NULL) {
    fprintf(stderr, "session %u: %s: %s\n", s->index, op_names[op], iscsi_get_error(iscsi));
    s->errors++;
    return;
  }
  if (task->status == SCSI_STATUS_GOOD) {
    s->done[op]++;
  } else if (task->status == SCSI_STATUS_BUSY) {
    s->busy++;
  } else if (task->status == SCSI_STATUS_CHECK_CONDITION && op == op_compare_and_write &&
             task->sense.key == SCSI_SENSE_MISCOMPARE) {
    s->miscompare++;
  } else {
    fprintf(stderr, "session %u: %s: status %d sense %x/%02x/%02x\n", s->index, op_names[op],
            task->status, task->sense.key, task->sense.ascq >> 8, task->sense.ascq & 0xff);
    s->errors++;
  }
  scsi_free_scsi_task(task);
}

static void compare_and_write(struct session* s, struct iscsi_context* iscsi, int lun, uint64_t lba,
                              uint32_t blocks, unsigned char* data) {
  struct scsi_task* rd =
      iscsi_read16_sync(iscsi, lun, lba, blocks * kBlockSize, kBlockSize, 0, 0, 0, 0, 0);
  /* BUSY: another session's COMPARE AND WRITE holds these blocks, and a read
     of them could see half its data; the target asks for a retry. */
  if (rd != NULL && rd->status == SCSI_STATUS_BUSY) {
    scsi_free_scsi_task(rd);
    s->busy++;
    return;
  }
  if (rd == NULL || rd->status != SCSI_STATUS_GOOD) {
    if (rd == NULL)
      fprintf(stderr, "session %u: read before COMPARE AND WRITE: %s\n", s->index,
              iscsi_get_error(iscsi));
    else
      fprintf(stderr, "session %u: read before COMPARE AND WRITE: status %d sense %x/%02x/%02x\n",
              s->index, rd->status, rd->sense.key, rd->sense.ascq >> 8, rd->sense.ascq & 0xff);
    if (rd) scsi_free_scsi_task(rd);
    s->errors++;
    return;
  }
  /* verify half: what was read; write half: new data (FUA now and then). */
  memmove(data + blocks * kBlockSize, data, blocks * kBlockSize);
  memcpy(data, rd->datain.data, blocks * kBlockSize);
  scsi_free_scsi_task(rd);
  const int fua = rand_r(&s->seed) % 2;
  outcome(s, iscsi, op_compare_and_write,
          iscsi_compareandwrite_sync(iscsi, lun, lba, data, 2 * blocks * kBlockSize, kBlockSize, 0,
                                     0, fua, 0, 0));
}

static void one_command(struct session* s, struct iscsi_context* iscsi, int lun,
                        unsigned char* data) {
  const enum op op = (enum op)(rand_r(&s->seed) % op_count);
  const uint32_t blocks = 1 + (uint32_t)(rand_r(&s->seed) % kMaxBlocks);
  const uint64_t lba = s->first_lba + (uint64_t)rand_r(&s->seed) % (s->blocks - blocks + 1);
  const uint32_t len = blocks * kBlockSize;
  fill(data, len, &s->seed);
  struct scsi_task* t = NULL;
  switch (op) {
    case op_write6:
      t = write6(iscsi, lun, (uint32_t)lba, data, blocks);
      break;
    case op_write10:
      t = iscsi_write10_sync(iscsi, lun, (uint32_t)lba, data, len, kBlockSize, 0, 0,
                             rand_r(&s->seed) % 2, 0, 0);
      break;
    case op_write12:
      t = iscsi_write12_sync(iscsi, lun, (uint32_t)lba, data, len, kBlockSize, 0, 0, 0, 0, 0);
      break;
    case op_write16_fua:
      t = iscsi_write16_sync(iscsi, lun, lba, data, len, kBlockSize, 0, 0, 1, 0, 0);
      break;
    case op_write_verify10:
      t = iscsi_writeverify10_sync(iscsi, lun, (uint32_t)lba, data, len, kBlockSize, 0, 0, 0, 0);
      break;
    case op_write_verify16:
      t = iscsi_writeverify16_sync(iscsi, lun, lba, data, len, kBlockSize, 0, 0, 0, 0);
      break;
    case op_write_same_pattern:
      t = iscsi_writesame10_sync(iscsi, lun, (uint32_t)lba, data, kBlockSize, (uint16_t)blocks, 0,
                                 0, 0, 0);
      break;
    case op_write_same_zero:
      memset(data, 0, kBlockSize);
      t = iscsi_writesame16_sync(iscsi, lun, lba, data, kBlockSize, blocks, 0, 0, 0, 0);
      break;
    case op_write_same_unmap:
      memset(data, 0, kBlockSize);
      t = iscsi_writesame16_sync(iscsi, lun, lba, data, kBlockSize, blocks, 0, 1, 0, 0);
      break;
    case op_unmap: {
      struct unmap_list list[2] = {{lba, blocks},
                                   {s->first_lba + (uint64_t)rand_r(&s->seed) % s->blocks, 1}};
      t = iscsi_unmap_sync(iscsi, lun, 0, 0, list, 2);
      break;
    }
    case op_compare_and_write:
      return compare_and_write(s, iscsi, lun, lba, blocks, data);
    case op_sync10:
      t = iscsi_synchronizecache10_sync(iscsi, lun, 0, 0, 0, 0);
      break;
    case op_sync16:
      t = iscsi_synchronizecache16_sync(iscsi, lun, 0, 0, 0, 0);
      break;
    case op_count:
      return;
  }
  outcome(s, iscsi, op, t);
}

static void* run_session(void* arg) {
  struct session* s = arg;
  char initiator[96];
  snprintf(initiator, sizeof initiator, "iqn.2025-01.com.jacobgade:durab-load-%u", s->index);
  int lun = 0;
  struct iscsi_context* iscsi = tool_login(initiator, s->url, &lun, 0);
  if (iscsi == NULL) {
    s->login_failed = 1;
    return NULL;
  }
  unsigned char* data = malloc(2 * kMaxBlocks * kBlockSize);
  const double end = now_s() + s->seconds;
  while (now_s() < end && data != NULL) one_command(s, iscsi, lun, data);
  /* The last word: every write of this session durable (writeback). */
  outcome(s, iscsi, op_sync16, iscsi_synchronizecache16_sync(iscsi, lun, 0, 0, 0, 0));
  free(data);
  iscsi_logout_sync(iscsi);
  iscsi_destroy_context(iscsi);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: durab_load URL FIRST_LBA BLOCKS SECONDS SESSIONS SEED\n");
    return 2;
  }
  const uint64_t first = strtoull(argv[2], NULL, 0), blocks = strtoull(argv[3], NULL, 0);
  const double seconds = strtod(argv[4], NULL);
  const unsigned n = (unsigned)strtoul(argv[5], NULL, 0),
                 seed = (unsigned)strtoul(argv[6], NULL, 0);
  if (blocks < kMaxBlocks || n == 0 || n > 64 || first + blocks > (1u << 21)) {
    fprintf(stderr,
            "durab_load: BLOCKS >= %d, SESSIONS 1..64, the span below LBA 2^21 "
            "(WRITE(6))\n",
            kMaxBlocks);
    return 2;
  }
  struct session* ss = calloc(n, sizeof *ss);
  for (unsigned i = 0; i < n; ++i) {
    ss[i] = (struct session){.url = argv[1],
                             .index = i,
                             .first_lba = first,
                             .blocks = blocks,
                             .seconds = seconds,
                             .seed = seed * 7919u + i};
    pthread_create(&ss[i].thread, NULL, run_session, &ss[i]);
  }
  unsigned long total[op_count] = {0}, miscompare = 0, busy = 0, errors = 0;
  int login_failed = 0;
  for (unsigned i = 0; i < n; ++i) {
    pthread_join(ss[i].thread, NULL);
    for (int k = 0; k < op_count; ++k) total[k] += ss[i].done[k];
    miscompare += ss[i].miscompare;
    busy += ss[i].busy;
    errors += ss[i].errors;
    login_failed |= ss[i].login_failed;
  }
  printf("OPS");
  for (int k = 0; k < op_count; ++k) printf(" %s=%lu", op_names[k], total[k]);
  printf(" miscompare=%lu busy=%lu errors=%lu\n", miscompare, busy, errors);
  free(ss);
  if (login_failed) return 3;
  return errors != 0 ? 1 : 0;
}
