/* cmd_data.c — `lmkit data prepare`: tokenizes a corpus into token shards.
 *
 * Each input file is one document; the ids of all documents are concatenated
 * with the end-of-text id after each, tokenized in parallel (see
 * src/tokenizer/files.c). The last --val-fraction of the whole token stream
 * becomes DIR/val.tok and the rest DIR/train.tok (src/train/shard.h format);
 * the tokenizer is saved beside them (DIR/tokenizer.json) so the data names
 * its tokenizer. `lmkit train --data DIR` reads the directory directly. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "tokenizer/tokenizer.h"
#include "train/shard.h"

static const char *HELP =
  "usage: lmkit data prepare --tokenizer T --data FILE... --out DIR [--val-fraction F] [--threads N]\n"
  "\n"
  "Tokenizes text into DIR/train.tok and DIR/val.tok (header + uint32 ids; documents,\n"
  "one per file, separated by the end-of-text id) and saves the tokenizer in DIR.\n"
  "  --tokenizer T       a directory, a tokenizer.json file, 'gpt2' or 'byte'\n"
  "  --data FILE...      text files (a directory means its files, *.dat skipped)\n"
  "  --out DIR           output directory (created if needed)\n"
  "  --val-fraction F    the last F of the token stream goes to val.tok (default 0.1; 0: none)\n"
  "  --threads N         threads (default: all cores)\n"
  "  --allow-special     match special tokens (e.g. <|endoftext|>) written in the text\n";

typedef struct { char **v; int n, cap; } strlist;

static int push(strlist *l, const char *s) {
  if (l->n == l->cap) {
    int nc = l->cap ? 2 * l->cap : 64;
    char **nv = realloc(l->v, (size_t)nc * sizeof *nv);
    if (!nv) return cli_error("out of memory");
    l->v = nv; l->cap = nc;
  }
  if (!(l->v[l->n] = strdup(s))) return cli_error("out of memory");
  l->n++;
  return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Adds a file, or a directory's regular files in name order. */
static int add_input(strlist *l, const char *path) {
  if (!lm_dir_exists(path)) {
    if (!lm_file_exists(path)) return cli_error("%s: no such file", path);
    return push(l, path);
  }
  DIR *d = opendir(path);
  if (!d) return cli_error("%s: cannot open directory", path);
  int first = l->n;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (e->d_name[0] == '.' || (n > 4 && !strcmp(e->d_name + n - 4, ".dat"))) continue;
    char *p = lm_path_join(path, e->d_name);
    if (!p) { closedir(d); return cli_error("out of memory"); }
    int rc = lm_file_exists(p) ? push(l, p) : 0;
    free(p);
    if (rc) { closedir(d); return rc; }
  }
  closedir(d);
  if (l->n == first) return cli_error("%s: no files in this directory", path);
  qsort(l->v + first, (size_t)(l->n - first), sizeof *l->v, cmp_str);
  return 0;
}

static int prepare(int argc, char **argv) {
  const char *spec = NULL, *out = NULL, *v;
  strlist files = {0};
  float valf = 0.1f;
  int64_t threads = 0;
  int allow = 0, r, rc = 0;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) { fputs(HELP, stdout); return 0; }
    if (!strcmp(argv[i], "--data")) {
      int got = 0;
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) { if (add_input(&files, argv[++i])) return 1; got++; }
      if (!got) return cli_error("option --data needs at least one file");
      continue;
    }
    if (!strcmp(argv[i], "--allow-special")) { allow = 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--tokenizer", &spec))) { if (r < 0) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &out))) { if (r < 0) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--val-fraction", &v))) { if (r < 0 || cli_f32("--val-fraction", v, 0, 0.9f, &valf)) return 1; continue; }
    if ((r = cli_opt(argc, argv, &i, "--threads", &v))) { if (r < 0 || cli_i64("--threads", v, 1, 4096, &threads)) return 1; continue; }
    return cli_unknown("data prepare", argv[i]);
  }
  if (!spec) return cli_error("data prepare needs --tokenizer T (a directory, 'gpt2' or 'byte')");
  if (!files.n) return cli_error("data prepare needs --data FILE...");
  if (!out) return cli_error("data prepare needs --out DIR");
  lm_tokenizer *tok;
  if (lm_tokenizer_load(&tok, spec)) return cli_fail();
  uint32_t *ids = NULL; uint64_t n = 0;
  double t0 = lm_time_sec();
  size_t bytes = 0;
  for (int i = 0; i < files.n; i++) {
    lm_mmap m;
    if (lm_mmap_open(&m, files.v[i]) == LM_OK) { bytes += m.len; lm_mmap_close(&m); }
  }
  if (lm_tokenize_files_ex(tok, (const char *const *)files.v, files.n, (int)threads, allow, 1, &ids, &n)) { rc = cli_fail(); goto done; }
  double dt = lm_time_sec() - t0;
  uint64_t n_val = (uint64_t)llround((double)valf * (double)n);
  if (valf > 0 && n_val == 0 && n >= 2) n_val = 1;
  uint64_t n_train = n - n_val;
  uint64_t eot = lm_tokenizer_eot(tok) >= 0 ? (uint64_t)lm_tokenizer_eot(tok) : UINT64_MAX;
  uint64_t vs = (uint64_t)lm_tokenizer_vocab_size(tok);
  char *tp = NULL, *vp = NULL;
  if (lm_mkdir_p(out) || lm_tokenizer_save(tok, out)) { rc = cli_fail(); goto done; }
  tp = lm_path_join(out, "train.tok"); vp = lm_path_join(out, "val.tok");
  if (!tp || !vp) { rc = cli_error("out of memory"); goto done2; }
  if (lm_shard_write(tp, ids, n_train, vs, eot)) { rc = cli_fail(); goto done2; }
  if (n_val) { if (lm_shard_write(vp, ids + n_train, n_val, vs, eot)) { rc = cli_fail(); goto done2; } }
  else remove(vp);
  fprintf(stderr, "%d file%s, %.2f MB -> %llu tokens (train %llu, val %llu) in %.2f s (%.1f MB/s); wrote %s\n", files.n,
          files.n == 1 ? "" : "s", bytes / 1e6, (unsigned long long)n, (unsigned long long)n_train,
          (unsigned long long)n_val, dt, dt > 0 ? bytes / 1e6 / dt : 0.0, out);
done2:
  free(tp); free(vp);
done:
  free(ids);
  lm_tokenizer_free(tok);
  for (int i = 0; i < files.n; i++) free(files.v[i]);
  free(files.v);
  return rc;
}

int cmd_data(int argc, char **argv) {
  if (argc < 2 || cli_is_help(argv[1])) { fputs(HELP, argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
  if (!strcmp(argv[1], "prepare")) return prepare(argc - 1, argv + 1);
  return cli_error("unknown subcommand 'data %s' (prepare)", argv[1]);
}
