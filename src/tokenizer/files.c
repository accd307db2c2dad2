/* files.c — tokenizing whole corpora in parallel (for `lmkit data prepare` and
 * for training on raw text).
 *
 * One file is one document; documents are concatenated with the end-of-text id
 * after each. To use every core even on one big file, each file is cut into
 * chunks (1/4 of a thread's share, 64 KiB to 1 MiB) at "safe" places: just after a '\n' whose neighbours
 * on both sides are printable, non-space ASCII. GPT-2's regex cannot match
 * across such a place (the newline is a whitespace run of one, followed by a
 * non-space), so encoding the chunks separately gives exactly the ids of one
 * serial encode. Chunks are encoded by an OpenMP team, one lm_tok_encoder per
 * thread, and joined in order. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "tokenizer/tokenizer.h"
#include "tokenizer/pipeline.h"


static int safe_byte(uint8_t c) { return c > 0x20 && c < 0x7F; }

size_t lm_tok_next_cut(const char *text, size_t len, size_t from) {
  size_t p = from < 2 ? 2 : from;   /* looking for text[p-1] == '\n' */
  while (p < len) {
    const char *nl = memchr(text + p - 1, '\n', len - (p - 1));
    if (!nl) return len;
    p = (size_t)(nl - text) + 1;
    if (p < len && safe_byte((uint8_t)text[p - 2]) && safe_byte((uint8_t)text[p])) return p;
    p++;
  }
  return len;
}

typedef struct { int doc; size_t start, end; uint32_t *ids; size_t n; } chunk;

static int specials_have_newline(const lm_tokenizer *t) {
  for (int i = 0; i < t->n_special; i++) {
    size_t n; const uint8_t *b = lm_tok_bytes(t, t->special[i], &n);
    if (memchr(b, '\n', n)) return 1;
  }
  return 0;
}

/* Encodes the chunks (in parallel) into their own arrays. */
static lm_status encode_chunks(const lm_tokenizer *tok, const char *const *docs, chunk *ch, size_t nch, int threads,
                               int allow_special, lm_progress *prog, size_t total_bytes) {
  lm_status st = LM_OK;
  if (threads <= 0) threads = omp_get_max_threads();
  if ((size_t)threads > nch) threads = nch ? (int)nch : 1;
  size_t done_bytes = 0;
  char err[1024] = "";
#pragma omp parallel num_threads(threads)
  {
    lm_tok_encoder *e = NULL;
    lm_status my = lm_tok_encoder_init(&e, tok);
    if (my) {
#pragma omp critical(lm_tok_err)
      if (!st) { st = my; snprintf(err, sizeof err, "%s", lm_last_error()); }
    }
#pragma omp for schedule(dynamic, 1)
    for (size_t c = 0; c < nch; c++) {
      if (my || st) continue;
      size_t cap = 0;
      ch[c].ids = NULL; ch[c].n = 0;
      my = lm_tok_encoder_encode(e, docs[ch[c].doc] + ch[c].start, ch[c].end - ch[c].start, allow_special, &ch[c].ids,
                                 &ch[c].n, &cap);
      if (my) {
#pragma omp critical(lm_tok_err)
        if (!st) { st = my; snprintf(err, sizeof err, "%s", lm_last_error()); }
      }
      if (prog) {
#pragma omp atomic
        done_bytes += ch[c].end - ch[c].start;
        if (omp_get_thread_num() == 0) {
          size_t d;
#pragma omp atomic read
          d = done_bytes;
          lm_progress_update(prog, (int64_t)(d >> 10), NULL);
        }
      }
    }
    lm_tok_encoder_free(e);
  }
  (void)total_bytes;
  if (st) lm_error(st, "%s", err);
  return st;
}

/* Splits docs into chunks; *out malloc'ed. */
static lm_status make_chunks(const lm_tokenizer *tok, const char *const *docs, const size_t *lens, int n_docs,
                             int allow_special, int threads, chunk **out, size_t *nout) {
  /* flags: LM_ENCODE_* (lmkit.h); the post-processor's tokens go around the whole text */
  int can_cut = !(allow_special & LM_ENCODE_ADD_SPECIAL) && !((allow_special & LM_ENCODE_SPECIAL) && specials_have_newline(tok)) &&
                (!tok->pipe || lm_tok_pipe_cut_safe(tok->pipe));
  size_t total = 0;
  for (int d = 0; d < n_docs; d++) total += lens[d];
  if (threads <= 0) threads = omp_get_max_threads();
  size_t target = total / ((size_t)threads * 4);
  if (target < ((size_t)64 << 10)) target = (size_t)64 << 10;
  if (target > ((size_t)1 << 20)) target = (size_t)1 << 20;
  size_t cap = 64, n = 0;
  chunk *ch = malloc(cap * sizeof *ch);
  if (!ch) return lm_error(LM_ERR_NOMEM, "out of memory");
  for (int d = 0; d < n_docs; d++) {
    size_t pos = 0;
    do {
      size_t end = lens[d];
      if (can_cut && lens[d] - pos > target + target / 2) end = lm_tok_next_cut(docs[d], lens[d], pos + target);
      if (n == cap) {
        chunk *nc = realloc(ch, 2 * cap * sizeof *nc);
        if (!nc) { free(ch); return lm_error(LM_ERR_NOMEM, "out of memory"); }
        ch = nc; cap *= 2;
      }
      ch[n++] = (chunk){d, pos, end, NULL, 0};
      pos = end;
    } while (pos < lens[d]);
  }
  *out = ch; *nout = n;
  return LM_OK;
}

/* Joins chunk outputs, adding `eot` (if >= 0) after each document; frees the chunks' ids. */
static lm_status join_chunks(chunk *ch, size_t nch, int n_docs, int64_t eot, uint32_t **ids, uint64_t *n) {
  uint64_t total = 0;
  for (size_t c = 0; c < nch; c++) total += ch[c].n;
  if (eot >= 0) total += (uint64_t)n_docs;
  uint32_t *out = malloc((total ? total : 1) * sizeof *out);
  if (!out) return lm_error(LM_ERR_NOMEM, "out of memory (%llu token ids)", (unsigned long long)total);
  uint64_t o = 0;
  for (size_t c = 0; c < nch; c++) {
    if (ch[c].n) memcpy(out + o, ch[c].ids, ch[c].n * sizeof *out);
    o += ch[c].n;
    free(ch[c].ids); ch[c].ids = NULL;
    if (eot >= 0 && (c + 1 == nch || ch[c + 1].doc != ch[c].doc)) out[o++] = (uint32_t)eot;
  }
  *ids = out; *n = o;
  return LM_OK;
}

static void free_chunks(chunk *ch, size_t n) {
  if (!ch) return;
  for (size_t i = 0; i < n; i++) free(ch[i].ids);
  free(ch);
}

lm_status lm_tokenize_buffer(const lm_tokenizer *tok, const char *text, size_t len, int threads, int allow_special,
                             uint32_t **ids, size_t *n) {
  *ids = NULL; *n = 0;
  chunk *ch = NULL; size_t nch = 0;
  const char *docs[1] = {text};
  lm_status st = make_chunks(tok, docs, &len, 1, allow_special, threads, &ch, &nch);
  if (!st) st = encode_chunks(tok, docs, ch, nch, threads, allow_special, NULL, len);
  uint64_t n64 = 0;
  if (!st) st = join_chunks(ch, nch, 1, -1, ids, &n64);
  *n = (size_t)n64;
  free_chunks(ch, nch);
  return st;
}

lm_status lm_tokenize_files_ex(const lm_tokenizer *tok, const char *const *files, int n_files, int threads,
                               int allow_special, int progress, uint32_t **ids, uint64_t *n) {
  *ids = NULL; *n = 0;
  if (n_files <= 0) return lm_error(LM_ERR_ARG, "no input files");
  lm_mmap *maps = calloc((size_t)n_files, sizeof *maps);
  const char **docs = calloc((size_t)n_files, sizeof *docs);
  size_t *lens = calloc((size_t)n_files, sizeof *lens);
  chunk *ch = NULL; size_t nch = 0;
  lm_status st = maps && docs && lens ? LM_OK : lm_error(LM_ERR_NOMEM, "out of memory");
  size_t total = 0;
  for (int f = 0; f < n_files && !st; f++) {
    st = lm_mmap_open(&maps[f], files[f]);
    docs[f] = maps[f].data ? maps[f].data : "";
    lens[f] = maps[f].len;
    total += lens[f];
  }
  if (!st) st = make_chunks(tok, docs, lens, n_files, allow_special, threads, &ch, &nch);
  lm_progress prog;
  if (!st && progress) lm_progress_start(&prog, "tokenizing (KiB)", (int64_t)(total >> 10));
  if (!st) st = encode_chunks(tok, docs, ch, nch, threads, allow_special, progress ? &prog : NULL, total);
  if (!st && progress) lm_progress_finish(&prog, NULL);
  if (!st) st = join_chunks(ch, nch, n_files, lm_tokenizer_eot(tok), ids, n);
  free_chunks(ch, nch);
  if (maps) for (int f = 0; f < n_files; f++) lm_mmap_close(&maps[f]);
  free(maps); free(docs); free(lens);
  return st;
}

lm_status lm_tokenize_files(const lm_tokenizer *tok, const char *const *files, int n_files, int threads,
                            uint32_t **ids, uint64_t *n) {
  return lm_tokenize_files_ex(tok, files, n_files, threads, 0, 0, ids, n);
}
