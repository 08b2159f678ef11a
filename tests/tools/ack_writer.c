/* ack_writer: writes self-describing blocks through iSCSI and logs every write
 * the target acknowledged with GOOD status, then checks later that each
 * acknowledged block is really there (through iSCSI or in the backing file).
 *
 *   ack_writer write [-i INITIATOR] [-n COUNT] [-s STRIDE] URL
 *       block k goes to LBA (k * STRIDE) mod capacity, generation
 *       k / capacity + 1; after GOOD status prints "ACK <lba> <generation>".
 *       Runs until COUNT writes (0 = forever) or the first failure.
 *   ack_writer verify [-i INITIATOR] URL ACKLOG
 *   ack_writer verify-file FILE BLOCK_SIZE ACKLOG
 *       every LBA named in ACKLOG must hold a valid block whose generation is
 *       at least the highest acknowledged one (a later, unacknowledged write
 *       may also have landed). Prints "VERIFIED <n> blocks" or "BAD ..." lines.
 *
 * Block layout (little endian): "RTGTACK1", LBA u64, generation u64, sequence
 * u64, filler from a generator seeded by (LBA, generation), and as the last
 * 8 bytes the FNV-1a 64 hash of everything before it.
 *
 * Exit status: 0 success, 1 verification failed, 2 usage, 3 I/O or iSCSI
 * error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char kMagic[8] = {'R', 'T', 'G', 'T', 'A', 'C', 'K', '1'};

static void put_u64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static uint64_t fnv1a(const unsigned char* p, size_t n) {
  uint64_t h = 14695981039346656037ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static void fill_block(unsigned char* b, uint32_t bs, uint64_t lba, uint64_t gen, uint64_t seq) {
  memcpy(b, kMagic, 8);
  put_u64(b + 8, lba);
  put_u64(b + 16, gen);
  put_u64(b + 24, seq);
  uint64_t x = (lba * 0x9E3779B97F4A7C15ULL) ^ (gen + 0x632BE59BD9B4E019ULL);
  if (x == 0) x = 1;
  for (uint32_t i = 32; i + 8 <= bs - 8; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    put_u64(b + i, x);
  }
  put_u64(b + bs - 8, fnv1a(b, bs - 8));
}

/* Returns NULL when the block is valid for (lba, at least gen), else why not.
 * The filler is regenerated and compared too, so any flipped byte counts. */
static const char* check_block(const unsigned char* b, uint32_t bs, uint64_t lba, uint64_t gen,
                               unsigned char* scratch) {
  if (memcmp(b, kMagic, 8) != 0) return "no magic (block never written or overwritten)";
  if (get_u64(b + 8) != lba) return "block carries another LBA";
  if (get_u64(b + bs - 8) != fnv1a(b, bs - 8)) return "checksum mismatch";
  uint64_t got_gen = get_u64(b + 16);
  if (got_gen < gen) return "older generation than acknowledged";
  fill_block(scratch, bs, lba, got_gen, get_u64(b + 24));
  if (memcmp(scratch, b, bs) != 0) return "contents differ from the pattern";
  return NULL;
}

static struct iscsi_context* connect_url(const char* initiator, const char* url_text, int* lun) {
  struct iscsi_context* iscsi =
      iscsi_create_context(initiator ? initiator : "iqn.2025-01.com.example:ack-writer");
  if (!iscsi) {
    fprintf(stderr, "ack_writer: cannot create an iSCSI context\n");
    exit(3);
  }
  struct iscsi_url* url = iscsi_parse_full_url(iscsi, url_text);
  if (!url) {
    fprintf(stderr, "ack_writer: bad URL %s: %s\n", url_text, iscsi_get_error(iscsi));
    exit(2);
  }
  /* After the target dies, fail instead of reconnecting. */
  iscsi_set_noautoreconnect(iscsi, 1);
  iscsi_set_timeout(iscsi, 10);
  iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
  if (iscsi_full_connect_sync(iscsi, url->portal, url->lun) != 0) {
    fprintf(stderr, "ack_writer: login to %s failed: %s\n", url_text, iscsi_get_error(iscsi));
    exit(3);
  }
  *lun = url->lun;
  iscsi_destroy_url(url);
  return iscsi;
}

static void read_capacity(struct iscsi_context* iscsi, int lun, uint64_t* nblocks, uint32_t* bs) {
  struct scsi_task* task = iscsi_readcapacity16_sync(iscsi, lun);
  if (!task || task->status != SCSI_STATUS_GOOD) {
    fprintf(stderr, "ack_writer: READ CAPACITY(16) failed: %s\n", iscsi_get_error(iscsi));
    exit(3);
  }
  struct scsi_readcapacity16* rc16 = scsi_datain_unmarshall(task);
  if (!rc16) {
    fprintf(stderr, "ack_writer: cannot parse READ CAPACITY(16) data\n");
    exit(3);
  }
  *nblocks = rc16->returned_lba + 1;
  *bs = rc16->block_length;
  scsi_free_scsi_task(task);
  if (*bs < 64 || *bs > 65536) {
    fprintf(stderr, "ack_writer: unexpected block size %u\n", *bs);
    exit(3);
  }
}

static int do_write(const char* initiator, uint64_t count, uint64_t stride, const char* url) {
  int lun;
  struct iscsi_context* iscsi = connect_url(initiator, url, &lun);
  uint64_t nblocks;
  uint32_t bs;
  read_capacity(iscsi, lun, &nblocks, &bs);
  fprintf(stderr, "ack_writer: %" PRIu64 " blocks of %u bytes, stride %" PRIu64 "\n", nblocks, bs,
          stride);
  unsigned char* buf = malloc(bs);
  if (!buf) return 3;
  for (uint64_t k = 0; count == 0 || k < count; k++) {
    uint64_t lba = (k * stride) % nblocks;
    uint64_t gen = k / nblocks + 1;
    fill_block(buf, bs, lba, gen, k);
    struct scsi_task* task = iscsi_write16_sync(iscsi, lun, lba, buf, bs, bs, 0, 0, 0, 0, 0);
    if (!task) {
      fprintf(stderr, "ack_writer: WRITE(16) lba %" PRIu64 " failed after %" PRIu64 " acks: %s\n",
              lba, k, iscsi_get_error(iscsi));
      return 3;
    }
    if (task->status != SCSI_STATUS_GOOD) {
      fprintf(stderr,
              "ack_writer: WRITE(16) lba %" PRIu64 " status %d after %" PRIu64 " acks: %s\n", lba,
              task->status, k, iscsi_get_error(iscsi));
      scsi_free_scsi_task(task);
      return 3;
    }
    scsi_free_scsi_task(task);
    printf("ACK %" PRIu64 " %" PRIu64 "\n", lba, gen);
    fflush(stdout);
  }
  free(buf);
  iscsi_logout_sync(iscsi);
  iscsi_destroy_context(iscsi);
  return 0;
}

/* Reads ACKLOG into a table of the highest acknowledged generation per LBA. */
static uint64_t* load_acks(const char* path, uint64_t nblocks, uint64_t* nacks) {
  FILE* f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "ack_writer: cannot open %s: %s\n", path, strerror(errno));
    exit(2);
  }
  uint64_t* gens = calloc(nblocks, sizeof(uint64_t));
  if (!gens) exit(3);
  char line[256];
  *nacks = 0;
  while (fgets(line, sizeof line, f)) {
    uint64_t lba, gen;
    if (sscanf(line, "ACK %" SCNu64 " %" SCNu64, &lba, &gen) != 2) continue;
    if (lba >= nblocks) {
      fprintf(stderr, "ack_writer: %s names LBA %" PRIu64 " beyond %" PRIu64 " blocks\n", path, lba,
              nblocks);
      exit(1);
    }
    if (gen > gens[lba]) gens[lba] = gen;
    ++*nacks;
  }
  fclose(f);
  return gens;
}

typedef int (*read_block_fn)(void* ctx, uint64_t lba, uint32_t bs, unsigned char* out);

static int verify_all(const uint64_t* gens, uint64_t nblocks, uint32_t bs, uint64_t nacks,
                      read_block_fn read_block, void* ctx) {
  unsigned char* buf = malloc(bs);
  unsigned char* scratch = malloc(bs);
  if (!buf || !scratch) return 3;
  uint64_t checked = 0, bad = 0;
  for (uint64_t lba = 0; lba < nblocks; lba++) {
    if (gens[lba] == 0) continue;
    if (read_block(ctx, lba, bs, buf) != 0) return 3;
    const char* why = check_block(buf, bs, lba, gens[lba], scratch);
    if (why) {
      if (bad < 20)
        printf("BAD lba %" PRIu64 " acked generation %" PRIu64 ": %s\n", lba, gens[lba], why);
      bad++;
    }
    checked++;
  }
  free(buf);
  free(scratch);
  if (bad) {
    printf("FAILED %" PRIu64 " of %" PRIu64 " acknowledged blocks are wrong (%" PRIu64 " acks)\n",
           bad, checked, nacks);
    return 1;
  }
  printf("VERIFIED %" PRIu64 " blocks from %" PRIu64 " acks\n", checked, nacks);
  return 0;
}

struct iscsi_reader {
  struct iscsi_context* iscsi;
  int lun;
};

static int read_iscsi(void* ctx, uint64_t lba, uint32_t bs, unsigned char* out) {
  struct iscsi_reader* r = ctx;
  struct scsi_task* task = iscsi_read16_sync(r->iscsi, r->lun, lba, bs, bs, 0, 0, 0, 0, 0);
  if (!task || task->status != SCSI_STATUS_GOOD || task->datain.size != (int)bs) {
    fprintf(stderr, "ack_writer: READ(16) lba %" PRIu64 " failed: %s\n", lba,
            iscsi_get_error(r->iscsi));
    return -1;
  }
  memcpy(out, task->datain.data, bs);
  scsi_free_scsi_task(task);
  return 0;
}

static int read_file(void* ctx, uint64_t lba, uint32_t bs, unsigned char* out) {
  int fd = *(int*)ctx;
  ssize_t n = pread(fd, out, bs, (off_t)(lba * bs));
  if (n != (ssize_t)bs) {
    fprintf(stderr, "ack_writer: pread lba %" PRIu64 ": %s\n", lba,
            n < 0 ? strerror(errno) : "short read");
    return -1;
  }
  return 0;
}

static int do_verify(const char* initiator, const char* url, const char* acklog) {
  struct iscsi_reader r;
  r.iscsi = connect_url(initiator, url, &r.lun);
  uint64_t nblocks, nacks;
  uint32_t bs;
  read_capacity(r.iscsi, r.lun, &nblocks, &bs);
  uint64_t* gens = load_acks(acklog, nblocks, &nacks);
  int rc = verify_all(gens, nblocks, bs, nacks, read_iscsi, &r);
  free(gens);
  iscsi_logout_sync(r.iscsi);
  iscsi_destroy_context(r.iscsi);
  return rc;
}

static int do_verify_file(const char* path, uint32_t bs, const char* acklog) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    fprintf(stderr, "ack_writer: cannot open %s: %s\n", path, strerror(errno));
    return 3;
  }
  uint64_t nblocks = (uint64_t)st.st_size / bs, nacks;
  uint64_t* gens = load_acks(acklog, nblocks, &nacks);
  int rc = verify_all(gens, nblocks, bs, nacks, read_file, &fd);
  free(gens);
  close(fd);
  return rc;
}

static int usage(void) {
  fprintf(stderr,
          "usage: ack_writer write [-i INITIATOR] [-n COUNT] [-s STRIDE] URL\n"
          "       ack_writer verify [-i INITIATOR] URL ACKLOG\n"
          "       ack_writer verify-file FILE BLOCK_SIZE ACKLOG\n");
  return 2;
}

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const char* mode = argv[1];
  const char* initiator = NULL;
  uint64_t count = 0, stride = 1;
  int opt;
  optind = 2;
  while ((opt = getopt(argc, argv, "i:n:s:")) != -1) {
    switch (opt) {
      case 'i':
        initiator = optarg;
        break;
      case 'n':
        count = strtoull(optarg, NULL, 0);
        break;
      case 's':
        stride = strtoull(optarg, NULL, 0);
        break;
      default:
        return usage();
    }
  }
  int rest = argc - optind;
  char** a = argv + optind;
  if (strcmp(mode, "write") == 0 && rest == 1) return do_write(initiator, count, stride, a[0]);
  if (strcmp(mode, "verify") == 0 && rest == 2) return do_verify(initiator, a[0], a[1]);
  if (strcmp(mode, "verify-file") == 0 && rest == 3) {
    long bs = strtol(a[1], NULL, 0);
    if (bs < 64 || bs > 65536) return usage();
    return do_verify_file(a[0], (uint32_t)bs, a[2]);
  }
  return usage();
}
