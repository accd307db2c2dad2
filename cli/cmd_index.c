/* cmd_index.c — `lmkit index`: builds a retrieval index from documents.
 * Files named on the command line are indexed as given; a directory is
 * walked (sub-directories too) and its files taken in byte order of their
 * names, hidden ones (starting with '.') left out. Each document is chunked
 * and added to BM25 (src/rag/index.c); with --embed-model every passage also
 * gets a dense vector. The index is written atomically. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"
#include "base/base.h"
#include "rag/rag.h"

static const char *HELP =
  "usage: lmkit index --docs DIR|FILE... --out IDX [options]\n"
  "\n"
  "Builds a retrieval index for 'lmkit ask' (and the server's \"retrieval\" field).\n"
  "Documents are cut into passages: paragraphs (separated by blank lines) packed\n"
  "into passages of at most --chunk-size words, consecutive passages sharing up to\n"
  "--overlap words; a longer paragraph is cut at words. Every passage goes into a\n"
  "BM25 index (k1 = 1.2, b = 0.75; terms are lowercased runs of letters and digits).\n"
  "With --embed-model, each passage also gets a dense vector: the mean of the model's\n"
  "final hidden states, L2-normalised ('lmkit embed --pool mean'), which dense and\n"
  "hybrid retrieval use. The file format is in docs/rag.md.\n"
  "\n"
  "options:\n"
  "  --docs PATH...       text files and directories to index (a directory: every file\n"
  "                       in it and below, in name order, hidden ones left out); the\n"
  "                       paths after --docs up to the next option\n"
  "  --out IDX            the index file to write (replaced atomically)\n"
  "  --embed-model DIR    a model (e.g. BERT) whose embeddings make dense vectors\n"
  "  --chunk-size N       words per passage at most (200)\n"
  "  --overlap N          words shared by consecutive passages at most (40)\n"
  "  --batch N            passages per embedding forward pass (16)\n"
  "  --threads N          threads (default: all cores)\n";

typedef struct { char **v; int64_t n, cap; } paths;

static int paths_add(paths *p, char *s) {
  if (!s) return cli_error("out of memory");
  if (p->n == p->cap) {
    int64_t c = p->cap ? 2 * p->cap : 16;
    char **v = realloc(p->v, (size_t)c * sizeof *v);
    if (!v) { free(s); return cli_error("out of memory"); }
    p->v = v;
    p->cap = c;
  }
  p->v[p->n++] = s;
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }
static int visible(const struct dirent *d) { return d->d_name[0] != '.'; }

/* the files under path (a file itself, or a directory's files, recursively, in name order) */
static int collect(paths *p, const char *path, int depth) {
  struct stat st;
  if (stat(path, &st)) return cli_error("%s: no such file or directory", path);
  if (!S_ISDIR(st.st_mode)) {
    if (!S_ISREG(st.st_mode)) return cli_error("%s: not a regular file or a directory", path);
    return paths_add(p, lm_strdup(path));
  }
  if (depth > 64) return cli_error("%s: directories nested deeper than 64 levels (a link loop?)", path);
  struct dirent **list;
  int n = scandir(path, &list, visible, by_name);
  if (n < 0) return cli_error("%s: cannot read the directory", path);
  int rc = 0;
  for (int i = 0; i < n; i++) {
    if (!rc) {
      char *sub = lm_path_join(path, list[i]->d_name);
      rc = sub ? collect(p, sub, depth + 1) : cli_error("out of memory");
      free(sub);
    }
    free(list[i]);
  }
  free(list);
  return rc;
}

static void on_embed(int64_t done, int64_t total, void *user) { lm_progress_update(user, done, NULL); (void)total; }

int cmd_index(int argc, char **argv) {
  const char *out = NULL, *embed = NULL, *v;
  lm_rag_chunk_opts co;
  lm_rag_chunk_opts_default(&co);
  lm_rag_embed_opts eo;
  lm_rag_embed_opts_default(&eo);
  int64_t threads = 0;
  int r, rc = 0;
  paths docs = {0}, files = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); return 0; }
    if (!strcmp(a, "--docs")) {
      int n0 = (int)docs.n;
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2))
        if (paths_add(&docs, lm_strdup(argv[++i]))) { rc = 1; goto done; }
      if (docs.n == n0) { rc = cli_error("option --docs needs at least one file or directory"); goto done; }
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--out", &v))) { if (r < 0) { rc = 1; goto done; } out = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--embed-model", &v))) { if (r < 0) { rc = 1; goto done; } embed = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--chunk-size", &v))) {
      if (r < 0 || cli_i64(a, v, 1, 1 << 24, &co.chunk_words)) { rc = 1; goto done; }
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--overlap", &v))) {
      if (r < 0 || cli_i64(a, v, 0, 1 << 24, &co.overlap_words)) { rc = 1; goto done; }
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--batch", &v))) {
      if (r < 0 || cli_i64(a, v, 1, 1 << 16, &eo.batch)) { rc = 1; goto done; }
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) {
      if (r < 0 || cli_i64(a, v, 1, 4096, &threads)) { rc = 1; goto done; }
      continue;
    }
    rc = cli_unknown("index", a);
    goto done;
  }
  if (!docs.n) { rc = cli_error("--docs DIR|FILE... is required (see 'lmkit index --help')"); goto done; }
  if (!out) { rc = cli_error("--out IDX is required (see 'lmkit index --help')"); goto done; }
  if (co.overlap_words >= co.chunk_words) {
    rc = cli_error("--overlap %lld must be smaller than --chunk-size %lld", (long long)co.overlap_words, (long long)co.chunk_words);
    goto done;
  }
  for (int64_t i = 0; i < docs.n; i++)
    if (collect(&files, docs.v[i], 0)) { rc = 1; goto done; }
  if (!files.n) { rc = cli_error("no files to index under the --docs paths"); goto done; }
  lm_set_threads((int)threads);
  lm_rag_index *ix = NULL;
  lm_rag_embedder *e = NULL;
  if (lm_rag_index_new(&ix, &co)) { rc = cli_fail(); goto done; }
  lm_progress pg;
  lm_progress_start(&pg, "chunking", files.n);
  for (int64_t i = 0; i < files.n && !rc; i++) {
    if (lm_rag_index_add_file(ix, files.v[i])) rc = cli_fail();
    else lm_progress_update(&pg, i + 1, NULL);
  }
  if (!rc) lm_progress_finish(&pg, NULL);
  if (!rc && !lm_rag_index_size(ix)) rc = cli_error("the documents hold no words: nothing to index");
  char *abs = NULL;
  if (!rc && embed) {
    /* the index names its model by absolute path, so that 'ask' finds it from any directory */
    abs = realpath(embed, NULL);
    int64_t cut = 0;
    if (!abs) rc = cli_error("%s: no such model directory", embed);
    else if (lm_rag_embedder_load(&e, abs, &eo)) rc = cli_fail();
    else {
      lm_progress_start(&pg, "embedding", lm_rag_index_size(ix));
      if (lm_rag_index_embed(ix, e, abs, &cut, on_embed, &pg)) rc = cli_fail();
      else lm_progress_finish(&pg, NULL);
    }
    if (!rc && cut)
      fprintf(stderr, "lmkit index: %lld of %lld passages are longer than the embedding model's %lld tokens: their "
              "vectors see only the beginning (a smaller --chunk-size avoids this)\n",
              (long long)cut, (long long)lm_rag_index_size(ix), (long long)lm_rag_embedder_context(e));
  }
  if (!rc && lm_rag_index_save(ix, out)) rc = cli_fail();
  if (!rc) {
    printf("indexed %lld documents: %lld passages, %lld terms", (long long)lm_rag_index_files(ix),
           (long long)lm_rag_index_size(ix), (long long)lm_rag_index_terms(ix));
    if (lm_rag_index_dim(ix)) printf(", vectors of %lld values from %s", (long long)lm_rag_index_dim(ix), abs);
    printf(" -> %s\n", out);
  }
  free(abs);
  lm_rag_embedder_free(e);
  lm_rag_index_free(ix);
done:
  for (int64_t i = 0; i < docs.n; i++) free(docs.v[i]);
  for (int64_t i = 0; i < files.n; i++) free(files.v[i]);
  free(docs.v);
  free(files.v);
  return rc;
}
