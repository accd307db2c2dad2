/* shard.c — read (mmap + validate) and write (atomic) token shards; see shard.h. */
#include <string.h>
#include "train/shard.h"

lm_status lm_shard_open(lm_shard *s, const char *path, int check_ids) {
  memset(s, 0, sizeof *s);
  lm_status st = lm_mmap_open(&s->map, path);
  if (st) return st;
  const unsigned char *p = s->map.data;
  if (s->map.len < LM_SHARD_HEADER || memcmp(p, LM_SHARD_MAGIC, 8) != 0) {
    lm_shard_close(s);
    return lm_error(LM_ERR_FORMAT, "%s: not a token shard (bad magic or shorter than the %d-byte header)", path, LM_SHARD_HEADER);
  }
  memcpy(&s->n, p + 8, 8);
  memcpy(&s->vocab_size, p + 16, 8);
  memcpy(&s->eot, p + 24, 8);
  size_t body = s->map.len - LM_SHARD_HEADER;
  if (s->n > body / 4 || body != s->n * 4) {
    uint64_t n = s->n;
    lm_shard_close(s);
    return lm_error(LM_ERR_FORMAT, "%s: header says %llu tokens but the file holds %zu bytes of ids (truncated or corrupt)",
                    path, (unsigned long long)n, body);
  }
  if (s->vocab_size == 0 || s->vocab_size > (1ull << 31)) {
    uint64_t v = s->vocab_size;
    lm_shard_close(s);
    return lm_error(LM_ERR_FORMAT, "%s: vocab size %llu out of range", path, (unsigned long long)v);
  }
  s->ids = (const uint32_t *)(p + LM_SHARD_HEADER);
  if (check_ids)
    for (uint64_t i = 0; i < s->n; i++)
      if (s->ids[i] >= s->vocab_size) {
        uint32_t id = s->ids[i]; uint64_t v = s->vocab_size;
        lm_shard_close(s);
        return lm_error(LM_ERR_FORMAT, "%s: token %llu has id %u >= vocab size %llu", path,
                        (unsigned long long)i, id, (unsigned long long)v);
      }
  return LM_OK;
}

void lm_shard_close(lm_shard *s) { lm_mmap_close(&s->map); memset(s, 0, sizeof *s); }

lm_status lm_shard_write(const char *path, const uint32_t *ids, uint64_t n, uint64_t vocab_size, uint64_t eot) {
  lm_atomic_file af;
  lm_status st = lm_atomic_open(&af, path);
  if (st) return st;
  unsigned char hdr[LM_SHARD_HEADER] = {0};
  memcpy(hdr, LM_SHARD_MAGIC, 8);
  memcpy(hdr + 8, &n, 8);
  memcpy(hdr + 16, &vocab_size, 8);
  memcpy(hdr + 24, &eot, 8);
  if (fwrite(hdr, 1, sizeof hdr, af.f) != sizeof hdr || (n && fwrite(ids, 4, n, af.f) != n)) {
    lm_atomic_abort(&af);
    return lm_error(LM_ERR_IO, "%s: write failed", path);
  }
  return lm_atomic_commit(&af);
}
