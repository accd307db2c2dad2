/* cmd_plot.c — `lmkit plot`: PNG plots through gnuplot (a separate program,
 * Debian gnuplot-nox, run with popen). The data go to a temporary directory as
 * whitespace-separated columns and a generated script plots them:
 *   --sweep SWEEP   isoflop.png (loss against N per budget: the runs, the
 *                   fitted parabolas of approach 2, approach 3's law along
 *                   C = 6ND), frontier.png (N_opt against C: IsoFLOP minima,
 *                   the two fitted power laws, every run), curves.png (each
 *                   run's training loss against FLOPs spent)
 *   --metrics RUN...  loss curves (training and validation) of runs'
 *                   metrics.jsonl against the step. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "base/base.h"
#include "cli.h"
#include "scaling/scaling.h"

static const char *HELP =
  "usage: lmkit plot --sweep SWEEP [--out DIR]\n"
  "       lmkit plot --metrics RUN|FILE... --out FILE.png\n"
  "\n"
  "Writes PNG plots with gnuplot (Debian: gnuplot-nox).\n"
  "  --sweep SWEEP       a sweep from 'lmkit sweep' (or any runs.jsonl, see 'lmkit fit'):\n"
  "                      DIR/isoflop.png   loss against N per budget: the runs, approach 2's\n"
  "                                        parabolas and approach 3's law along C = 6ND\n"
  "                      DIR/frontier.png  compute-optimal N against C: IsoFLOP minima, both\n"
  "                                        fitted power laws, and every run\n"
  "                      DIR/curves.png    each run's training loss against the FLOPs spent\n"
  "                                        (runs with SWEEP/runs/NAME/metrics.jsonl)\n"
  "  --out DIR|FILE.png  where the plots go (--sweep: a directory, default SWEEP/plots)\n"
  "  --metrics RUN...    training runs (directories with metrics.jsonl, or the files): the\n"
  "                      training loss and validation loss against the step, one color a run\n"
  "  --title TEXT        the plots' title prefix\n";

/* a temporary folder for the data files, and the script piped to gnuplot */
typedef struct { char dir[64]; int n_files; } plot_tmp;

static FILE *tmp_file(plot_tmp *t, char *path, size_t cap) {
  snprintf(path, cap, "%s/d%d.dat", t->dir, t->n_files++);
  FILE *f = fopen(path, "w");
  if (!f) cli_error("%s: cannot write", path);
  return f;
}

static void tmp_clean(plot_tmp *t) {
  char p[96];
  for (int i = 0; i < t->n_files; i++) { snprintf(p, sizeof p, "%s/d%d.dat", t->dir, i); unlink(p); }
  rmdir(t->dir);
}

static int run_gnuplot(const char *script) {
  FILE *g = popen("gnuplot 2>&1", "w");
  if (!g) return cli_error("cannot run gnuplot (Debian: apt-get install gnuplot-nox)");
  fputs(script, g);
  int st = pclose(g);
  if (st == 127 << 8) return cli_error("gnuplot not found (Debian: apt-get install gnuplot-nox)");
  return st ? cli_error("gnuplot failed (exit status %d)", st) : 0;
}

/* a growing script */
typedef struct { char *s; size_t len, cap; } text;
static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (t->s && t->len + (size_t)n < t->cap) { t->len += (size_t)n; return; }
    size_t cap = (t->cap + (size_t)n + 1) * 2;
    char *s = realloc(t->s, cap);
    if (!s) return;
    t->s = s; t->cap = cap;
  }
}

/* the training-loss lines of a metrics.jsonl as "x loss" with x = step * scale; returns the count */
static int64_t curve(const char *metrics, double scale, FILE *out, FILE *val_out) {
  FILE *f = fopen(metrics, "r");
  if (!f) return -1;
  char line[4096];
  int64_t n = 0;
  while (fgets(line, sizeof line, f)) {
    long long step; double v;
    if (sscanf(line, "{\"step\": %lld, \"loss\": %lf", &step, &v) == 2) { fprintf(out, "%.9g %.9g\n", step * scale, v); n++; }
    else if (val_out && sscanf(line, "{\"step\": %lld, \"val_loss\": %lf", &step, &v) == 2) fprintf(val_out, "%.9g %.9g\n", step * scale, v);
  }
  fclose(f);
  return n;
}

static const char *PNG = "set terminal pngcairo size 900,640 font ',10'\nset grid\nset key outside right top\n";

static int plot_sweep(const char *sweep, const char *out, const char *title) {
  lm_scaling_run *runs = NULL;
  int64_t n = 0;
  if (lm_scaling_read(sweep, &runs, &n)) return cli_fail();
  lm_scaling_fit_opts o;
  lm_scaling_fit_opts_default(&o);
  o.n_boot = 0;
  lm_scaling_fit f;
  if (lm_scaling_fit_runs(runs, n, &o, &f)) { free(runs); return cli_fail(); }
  plot_tmp t = {.n_files = 0};
  snprintf(t.dir, sizeof t.dir, "/tmp/lmkit-plot-XXXXXX");
  text s = {0};
  int rc = 0;
  char path[128], *outdir = out ? lm_strdup(out) : lm_path_join(lm_dir_exists(sweep) ? sweep : ".", "plots");
  if (!outdir || lm_mkdir_p(outdir)) { rc = cli_fail(); goto done; }
  if (!mkdtemp(t.dir)) { rc = cli_error("cannot create a temporary directory"); goto done; }
  /* isoflop.png */
  add(&s, "%sset output '%s/isoflop.png'\nset logscale x\nset xlabel 'non-embedding parameters N'\nset ylabel 'validation loss'\n"
          "set title '%sIsoFLOP profiles: runs, approach 2 parabolas (solid), approach 3 law (dashed)'\nplot ", PNG, outdir, title);
  for (int64_t i = 0; i < f.n_iso; i++) {
    const lm_isoflop *p = &f.iso[i];
    FILE *d = tmp_file(&t, path, sizeof path);
    if (!d) { rc = 1; goto done; }
    double lo = INFINITY, hi = 0;
    for (int64_t k = 0; k < n; k++)
      if (fabs(log(runs[k].flops / p->flops)) < log(1.1)) {
        fprintf(d, "%.9g %.9g\n", runs[k].params, runs[k].val_loss);
        lo = fmin(lo, runs[k].params); hi = fmax(hi, runs[k].params);
      }
    fclose(d);
    add(&s, "%s'%s' using 1:2 with points pt 7 lc %lld title 'C = %.3g'", i ? ", " : "", path, (long long)i + 1, p->flops);
    /* the curves as sampled lines (gnuplot's own functions would need the logscale's range) */
    FILE *c = tmp_file(&t, path, sizeof path);
    if (!c) { rc = 1; goto done; }
    FILE *c3 = NULL;
    char path3[128];
    if (!(c3 = tmp_file(&t, path3, sizeof path3))) { fclose(c); rc = 1; goto done; }
    for (int q = 0; q <= 60; q++) {
      double N = lo / 1.5 * pow(hi * 1.5 / (lo / 1.5), q / 60.0), x = log(N);
      if (p->ok) fprintf(c, "%.9g %.9g\n", N, p->curv[0] + p->curv[1] * x + p->curv[2] * x * x);
      fprintf(c3, "%.9g %.9g\n", N, lm_scaling_law_loss(&f.law, N, p->flops / (6 * N)));
    }
    fclose(c); fclose(c3);
    if (p->ok) add(&s, ", '%s' using 1:2 with lines lc %lld notitle", path, (long long)i + 1);
    add(&s, ", '%s' using 1:2 with lines dt 2 lc %lld notitle", path3, (long long)i + 1);
  }
  add(&s, "\n");
  /* frontier.png */
  {
    FILE *all = tmp_file(&t, path, sizeof path);
    if (!all) { rc = 1; goto done; }
    double cmin = INFINITY, cmax = 0;
    for (int64_t k = 0; k < n; k++) {
      fprintf(all, "%.9g %.9g\n", runs[k].flops, runs[k].params);
      cmin = fmin(cmin, runs[k].flops); cmax = fmax(cmax, runs[k].flops);
    }
    fclose(all);
    char pall[128], pmin[128], p3[128];
    snprintf(pall, sizeof pall, "%s", path);
    FILE *mn = tmp_file(&t, pmin, sizeof pmin), *l3 = mn ? tmp_file(&t, p3, sizeof p3) : NULL;
    if (!mn || !l3) { if (mn) fclose(mn); rc = 1; goto done; }
    for (int64_t i = 0; i < f.n_iso; i++)
      if (f.iso[i].ok) fprintf(mn, "%.9g %.9g\n", f.iso[i].flops, f.iso[i].n_opt);
    for (int q = 0; q <= 40; q++) {
      double C = cmin / 3 * pow(cmax * 9 / cmin, q / 40.0), no, dd;
      lm_scaling_law_optimum(&f.law, C, &no, &dd);
      fprintf(l3, "%.9g %.9g %.9g\n", C, no, isfinite(f.a2) ? exp(f.a2_k) * pow(C, f.a2) : NAN);
    }
    fclose(mn); fclose(l3);
    add(&s, "set output '%s/frontier.png'\nunset logscale\nset logscale xy\nset xlabel 'compute C = 6ND (FLOPs)'\n"
            "set ylabel 'non-embedding parameters N'\nset title '%scompute-optimal N: N_{opt} ∝ C^{%.3f} (approach 3), C^{%.3f} (approach 2)'\n"
            "plot '%s' using 1:2 with points pt 6 lc 'gray' title 'runs', '%s' using 1:2 with points pt 7 ps 1.5 lc 1 title 'IsoFLOP minima', "
            "'%s' using 1:2 with lines lw 2 lc 2 title 'approach 3'", outdir, title, f.a3, isfinite(f.a2) ? f.a2 : NAN, pall, pmin, p3);
    if (isfinite(f.a2)) add(&s, ", '%s' using 1:3 with lines dt 2 lw 2 lc 1 title 'approach 2'", p3);
    add(&s, "\n");
  }
  /* curves.png: the runs with metrics.jsonl in SWEEP/runs/NAME */
  {
    int shown = 0;
    text c = {0};
    for (int64_t k = 0; k < n && lm_dir_exists(sweep); k++) {
      if (!runs[k].run[0] || !runs[k].steps) continue;
      char sub[128];
      snprintf(sub, sizeof sub, "runs/%s/metrics.jsonl", runs[k].run);
      char *mp = lm_path_join(sweep, sub);
      FILE *d = mp ? tmp_file(&t, path, sizeof path) : NULL;
      int64_t got = d ? curve(mp, 6 * runs[k].params * runs[k].tokens / (double)runs[k].steps, d, NULL) : -1;
      if (d) fclose(d);
      free(mp);
      if (got <= 0) continue;
      add(&c, "%s'%s' using 1:2 with lines title '%s'", shown++ ? ", " : "", path, runs[k].run);
    }
    if (shown)
      add(&s, "set output '%s/curves.png'\nunset logscale\nset logscale x\nset xlabel 'training FLOPs (6 N tokens)'\n"
              "set ylabel 'training loss'\nset title '%straining loss against compute'\nset key font ',8'\nplot %s\n",
          outdir, title, c.s);
    free(c.s);
    if (!s.s) { rc = cli_error("out of memory"); goto done; }
    if ((rc = run_gnuplot(s.s))) goto done;
    fprintf(stderr, "lmkit plot: %s/isoflop.png, %s/frontier.png%s%s%s\n", outdir, outdir, shown ? ", " : "",
            shown ? outdir : "", shown ? "/curves.png" : " (no run has metrics.jsonl: no curves.png)");
  }
done:
  if (t.dir[0] && strstr(t.dir, "XXXXXX") == NULL) tmp_clean(&t);
  free(s.s); free(outdir); free(runs);
  lm_scaling_fit_free(&f);
  return rc;
}

static int plot_metrics(const char *const *files, int n_files, const char *out, const char *title) {
  if (!out) return cli_error("--metrics needs --out FILE.png");
  plot_tmp t = {.n_files = 0};
  snprintf(t.dir, sizeof t.dir, "/tmp/lmkit-plot-XXXXXX");
  if (!mkdtemp(t.dir)) return cli_error("cannot create a temporary directory");
  text s = {0};
  int rc = 0;
  add(&s, "%sset output '%s'\nset xlabel 'step'\nset ylabel 'loss'\nset title '%sloss curves'\nplot ", PNG, out, title);
  for (int i = 0; i < n_files && !rc; i++) {
    char *mp = lm_dir_exists(files[i]) ? lm_path_join(files[i], "metrics.jsonl") : lm_strdup(files[i]), pt[128], pv[128];
    FILE *d = mp ? tmp_file(&t, pt, sizeof pt) : NULL, *v = d ? tmp_file(&t, pv, sizeof pv) : NULL;
    int64_t got = d && v ? curve(mp, 1, d, v) : -1;
    if (d) fclose(d);
    if (v) fclose(v);
    if (got < 0) rc = cli_error("%s: cannot read", mp ? mp : files[i]);
    else if (got == 0) rc = cli_error("%s: no training-loss lines ({\"step\": N, \"loss\": X, ...})", mp);
    else add(&s, "%s'%s' using 1:2 with lines lc %d title '%s (train)', '%s' using 1:2 with linespoints pt 7 dt 2 lc %d title '%s (val)'",
             i ? ", " : "", pt, i + 1, files[i], pv, i + 1, files[i]);
    free(mp);
  }
  add(&s, "\n");
  if (!rc) rc = s.s ? run_gnuplot(s.s) : cli_error("out of memory");
  if (!rc) fprintf(stderr, "lmkit plot: %s\n", out);
  tmp_clean(&t);
  free(s.s);
  return rc;
}

int cmd_plot(int argc, char **argv) {
  const char *sweep = NULL, *out = NULL, *title = "", *v;
  const char **metrics = calloc(argc, sizeof *metrics);
  int n_metrics = 0, r;
  if (!metrics) return cli_error("out of memory");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) { fputs(HELP, stdout); free(metrics); return 0; }
    if (!strcmp(a, "--metrics")) {
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) metrics[n_metrics++] = argv[++i];
      continue;
    }
    if ((r = cli_opt(argc, argv, &i, "--sweep", &v))) { if (r < 0) { free(metrics); return 1; } sweep = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--out", &v))) { if (r < 0) { free(metrics); return 1; } out = v; continue; }
    if ((r = cli_opt(argc, argv, &i, "--title", &v))) { if (r < 0) { free(metrics); return 1; } title = v; continue; }
    free(metrics);
    return cli_unknown("plot", a);
  }
  int rc;
  const char *named[] = {sweep, out};
  for (int i = 0; i < 2 + n_metrics; i++) {
    const char *p = i < 2 ? named[i] : metrics[i - 2];
    if (p && strchr(p, '\'')) { free(metrics); return cli_error("%s: a path with a single quote cannot go into gnuplot's script", p); }
  }
  char tbuf[256];
  snprintf(tbuf, sizeof tbuf, "%s%s", title, title[0] ? ": " : "");
  for (char *p = tbuf; *p; p++) if (*p == '\'') *p = '`';   /* inside gnuplot's single quotes */
  if (!!sweep == !!n_metrics) rc = cli_error("give --sweep SWEEP or --metrics RUN... (see 'lmkit plot --help')");
  else if (sweep) rc = plot_sweep(sweep, out, tbuf);
  else rc = plot_metrics(metrics, n_metrics, out, tbuf);
  free(metrics);
  return rc;
}
