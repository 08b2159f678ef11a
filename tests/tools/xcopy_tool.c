/* xcopy_tool: EXTENDED COPY (LID1) from a libiscsi initiator, for the
 * integration tests (sg_xcopy and ddpt need a kernel SCSI device; there is no
 * kernel initiator here).
 *
 *   xcopy_tool [-i INITIATOR] URL designator
 *       prints "DESIGNATOR 0x<16 hex digits>", the NAA designator of the LU's
 *       VPD page 83h (what a CSCD descriptor names it by), and
 *       "BLOCK_SIZE <n>" from READ CAPACITY(16).
 *   xcopy_tool [-i INITIATOR] URL copy SRC DST SRC_LBA DST_LBA BLOCKS
 *       EXTENDED COPY(LID1) sent to URL's LU: two identification CSCD
 *       descriptors (E4h) for SRC and DST, each DESIGNATOR[/BLOCK_SIZE]
 *       (block size 512 when not given), and as many block-to-block segment
 *       descriptors as BLOCKS (source blocks) needs at 16 MiB each; LIST ID
 *       1, status held. Prints "XCOPY GOOD", "XCOPY CHECK_CONDITION
 *       <key>/<asc>/<ascq>" (two hex digits each) or "XCOPY STATUS <s>", then
 *       what RECEIVE COPY RESULTS (COPY STATUS) says of LIST ID 1:
 *       "COPY_STATUS <status> SEGMENTS <n> BYTES <n>".
 *
 * Exit status: 0 the commands got a SCSI status (whatever it was), 2 usage,
 * 3 iSCSI error.
 */
#include <getopt.h>
#include <inttypes.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool_login.h"

enum { kCscdLength = 32, kSegmentLength = 28, kMaxSegments = 64, kListId = 1 };
static const uint64_t kMaxSegmentBytes = 16u << 20;

static int usage(void) {
  fprintf(stderr,
          "usage: xcopy_tool [-i INITIATOR] URL designator\n"
          "       xcopy_tool [-i INITIATOR] URL copy SRC DST SRC_LBA DST_LBA BLOCKS\n"
          "       (SRC, DST: DESIGNATOR[/BLOCK_SIZE])\n");
  return 2;
}

static void put_be16(unsigned char* p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

static void put_be32(unsigned char* p, uint32_t v) {
  put_be16(p, (uint16_t)(v >> 16));
  put_be16(p + 2, (uint16_t)v);
}

static void put_be64(unsigned char* p, uint64_t v) {
  put_be32(p, (uint32_t)(v >> 32));
  put_be32(p + 4, (uint32_t)v);
}

static uint64_t get_be64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | p[i];
  return v;
}

/* The NAA designator (binary, associated with the LU, 8 bytes) of VPD page
 * 83h. Returns 0 and sets *out, or 1. */
static int read_designator(struct iscsi_context* iscsi, int lun, uint64_t* out) {
  struct scsi_task* task = iscsi_inquiry_sync(iscsi, lun, 1, 0x83, 255);
  if (task == NULL || task->status != SCSI_STATUS_GOOD) {
    fprintf(stderr, "INQUIRY VPD 83h failed: %s\n", iscsi_get_error(iscsi));
    if (task) scsi_free_scsi_task(task);
    return 1;
  }
  const unsigned char* d = task->datain.data;
  const int size = task->datain.size;
  int end = size >= 4 ? 4 + (d[2] << 8 | d[3]) : 0;
  if (end > size) end = size;
  int found = 0;
  for (int pos = 4; pos + 4 <= end && !found; pos += 4 + d[pos + 3]) {
    const unsigned char* x = d + pos;
    if ((x[0] & 0x0f) == 0x01 && (x[1] & 0x30) == 0x00 && (x[1] & 0x0f) == 0x03 && x[3] == 8 &&
        pos + 12 <= end) {
      *out = get_be64(x + 4);
      found = 1;
    }
  }
  scsi_free_scsi_task(task);
  if (!found) fprintf(stderr, "no NAA designator in VPD page 83h\n");
  return found ? 0 : 1;
}

static int show_designator(struct iscsi_context* iscsi, int lun) {
  uint64_t designator;
  if (read_designator(iscsi, lun, &designator) != 0) return 3;
  struct scsi_task* task = iscsi_readcapacity16_sync(iscsi, lun);
  if (task == NULL || task->status != SCSI_STATUS_GOOD) {
    fprintf(stderr, "READ CAPACITY(16) failed: %s\n", iscsi_get_error(iscsi));
    if (task) scsi_free_scsi_task(task);
    return 3;
  }
  struct scsi_readcapacity16* rc = scsi_datain_unmarshall(task);
  if (rc == NULL) {
    fprintf(stderr, "cannot parse READ CAPACITY(16) data\n");
    scsi_free_scsi_task(task);
    return 3;
  }
  printf("DESIGNATOR 0x%016" PRIx64 "\nBLOCK_SIZE %" PRIu32 "\n", designator, rc->block_length);
  scsi_free_scsi_task(task);
  return 0;
}

struct copy_target {
  uint64_t designator;
  uint32_t block_size;
};

static int parse_target(const char* text, struct copy_target* t) {
  char* end;
  t->designator = strtoull(text, &end, 0);
  t->block_size = 512;
  if (*end == '/') t->block_size = (uint32_t)strtoul(end + 1, &end, 0);
  return *end == '\0' && t->block_size != 0 ? 0 : 1;
}

/* An identification CSCD descriptor (E4h) for a block device. */
static void put_cscd(unsigned char* d, const struct copy_target* t) {
  memset(d, 0, kCscdLength);
  d[0] = 0xe4;
  d[1] = 0x00; /* peripheral device type: direct access block device */
  d[4] = 0x01; /* code set: binary */
  d[5] = 0x03; /* association: LU; designator type: NAA */
  d[7] = 8;
  put_be64(&d[8], t->designator);
  d[29] = (unsigned char)(t->block_size >> 16);
  d[30] = (unsigned char)(t->block_size >> 8);
  d[31] = (unsigned char)t->block_size;
}

static int copy(struct iscsi_context* iscsi, int lun, const struct copy_target* src,
                const struct copy_target* dst, uint64_t src_lba, uint64_t dst_lba,
                uint64_t blocks) {
  uint64_t per_segment = kMaxSegmentBytes / src->block_size;
  if (per_segment > 0xffff) per_segment = 0xffff;
  const uint64_t segments = (blocks + per_segment - 1) / per_segment;
  if (segments == 0 || segments > kMaxSegments) {
    fprintf(stderr, "%" PRIu64 " blocks do not fit 1..%d segments\n", blocks, kMaxSegments);
    return 2;
  }
  const size_t len = 16 + 2 * kCscdLength + segments * kSegmentLength;
  unsigned char* p = calloc(1, len);
  if (p == NULL) return 3;
  p[0] = kListId;
  p[1] = 0x00; /* LIST ID USAGE 00b: hold the status and the failed segment details */
  put_be16(&p[2], 2 * kCscdLength);
  put_be32(&p[8], (uint32_t)(segments * kSegmentLength));
  put_cscd(&p[16], src);
  put_cscd(&p[16 + kCscdLength], dst);
  unsigned char* s = &p[16 + 2 * kCscdLength];
  uint64_t done = 0;
  for (uint64_t i = 0; i < segments; ++i, s += kSegmentLength) {
    const uint64_t n = blocks - done < per_segment ? blocks - done : per_segment;
    s[0] = 0x02; /* block to block */
    put_be16(&s[2], 0x18);
    put_be16(&s[4], 0); /* source: the first CSCD descriptor */
    put_be16(&s[6], 1); /* destination: the second */
    put_be16(&s[10], (uint16_t)n);
    put_be64(&s[12], src_lba + done);
    /* DC 0: the count is in source blocks; the destination LBA moves by
     * the same bytes in its own blocks. */
    put_be64(&s[20], dst_lba + done * src->block_size / dst->block_size);
    done += n;
  }

  struct iscsi_data data = {len, p};
  struct scsi_task* task = iscsi_extended_copy_sync(iscsi, lun, &data);
  free(p);
  if (task == NULL) {
    fprintf(stderr, "EXTENDED COPY: %s\n", iscsi_get_error(iscsi));
    return 3;
  }
  if (task->status == SCSI_STATUS_GOOD) {
    printf("XCOPY GOOD\n");
  } else if (task->status == SCSI_STATUS_CHECK_CONDITION) {
    printf("XCOPY CHECK_CONDITION 0x%02x/0x%02x/0x%02x\n", task->sense.key,
           (task->sense.ascq >> 8) & 0xff, task->sense.ascq & 0xff);
  } else {
    printf("XCOPY STATUS 0x%02x\n", task->status);
  }
  scsi_free_scsi_task(task);

  task = iscsi_receive_copy_results_sync(iscsi, lun, SCSI_COPY_RESULTS_COPY_STATUS, kListId, 64);
  if (task == NULL) {
    fprintf(stderr, "RECEIVE COPY RESULTS: %s\n", iscsi_get_error(iscsi));
    return 3;
  }
  if (task->status == SCSI_STATUS_GOOD && task->datain.size >= 12) {
    const unsigned char* d = task->datain.data;
    printf("COPY_STATUS 0x%02x SEGMENTS %u BYTES %" PRIu32 "\n", d[4], d[5] << 8 | d[6],
           (uint32_t)d[8] << 24 | (uint32_t)d[9] << 16 | (uint32_t)d[10] << 8 | d[11]);
  } else {
    printf("COPY_STATUS NONE\n");
  }
  scsi_free_scsi_task(task);
  return 0;
}

int main(int argc, char** argv) {
  const char* initiator = "iqn.2025-01.com.example:xcopy-tool";
  int opt;
  while ((opt = getopt(argc, argv, "i:")) != -1) {
    if (opt != 'i') return usage();
    initiator = optarg;
  }
  if (argc - optind < 2) return usage();
  const char* url = argv[optind];
  const char* what = argv[optind + 1];
  char** rest = argv + optind + 2;
  const int nrest = argc - optind - 2;

  struct copy_target src, dst;
  uint64_t src_lba = 0, dst_lba = 0, blocks = 0;
  if (strcmp(what, "designator") == 0) {
    if (nrest != 0) return usage();
  } else if (strcmp(what, "copy") == 0) {
    if (nrest != 5 || parse_target(rest[0], &src) != 0 || parse_target(rest[1], &dst) != 0) {
      return usage();
    }
    src_lba = strtoull(rest[2], NULL, 0);
    dst_lba = strtoull(rest[3], NULL, 0);
    blocks = strtoull(rest[4], NULL, 0);
  } else {
    return usage();
  }

  int lun = 0;
  struct iscsi_context* iscsi = tool_login(initiator, url, &lun, 0);
  if (iscsi == NULL) return 3;
  const int rc = strcmp(what, "designator") == 0
                     ? show_designator(iscsi, lun)
                     : copy(iscsi, lun, &src, &dst, src_lba, dst_lba, blocks);
  iscsi_logout_sync(iscsi);
  iscsi_destroy_context(iscsi);
  return rc;
}
