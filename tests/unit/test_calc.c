/* test_calc.c — the calculator tool's evaluator and splice (src/infer/calc.c):
 * values worked by hand, precedence and associativity, every kind of "error",
 * the result text, and where a call is (and is not) spliced. */
#include <criterion/criterion.h>
#include <string.h>
#include "infer/calc.h"

static const char *res(const char *e) {
  static char out[64];
  lm_calc_result(e, strlen(e), out, sizeof out);
  return out;
}

Test(calc, values) {
  cr_expect_str_eq(res("77*33"), "2541");
  cr_expect_str_eq(res("77 + 33"), "110");
  cr_expect_str_eq(res("2+3*4"), "14");
  cr_expect_str_eq(res("(2+3)*4"), "20");
  cr_expect_str_eq(res("10-4-3"), "3");          /* left-associative */
  cr_expect_str_eq(res("64/4/2"), "8");
  cr_expect_str_eq(res("2^3^2"), "512");         /* right-associative */
  cr_expect_str_eq(res("2**10"), "1024");
  cr_expect_str_eq(res("-2^2"), "-4");           /* -(2^2) */
  cr_expect_str_eq(res("2^-1"), "0.5");
  cr_expect_str_eq(res("--3"), "3");
  cr_expect_str_eq(res("7/2"), "3.5");
  cr_expect_str_eq(res("1/3"), "0.3333333333");
  cr_expect_str_eq(res("0.1+0.2"), "0.3");
  cr_expect_str_eq(res("1.5e3"), "1500");
  cr_expect_str_eq(res("6 \xc3\x97 7"), "42");   /* × */
  cr_expect_str_eq(res("84 \xc3\xb7 2"), "42");  /* ÷ */
  cr_expect_str_eq(res("5 \xe2\x88\x92 7"), "-2");   /* U+2212 */
  cr_expect_str_eq(res("0*-5"), "0");            /* no "-0" */
  cr_expect_str_eq(res(" ( ( 1 ) ) "), "1");
  cr_expect_str_eq(res("999999999999999"), "999999999999999");
}

Test(calc, errors) {
  const char *bad[] = {"", " ", "1/0", "0^-1", "(-8)^0.5", "10^16", "99999999*99999999", "1e16", "1e999",
                       "2^2^2^2^2", "(1", "1)", "1+", "*1", "a", "2x", "1..2", ".", "1e", "1e+", "system(1)",
                       "1 2", "3 ** * 2", "0x10", "inf", "nan", "--"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) cr_expect_str_eq(res(bad[i]), "error", "%s", bad[i]);
  char deep[200];
  memset(deep, '(', 70); deep[70] = '1'; memset(deep + 71, ')', 70); deep[141] = 0;
  cr_expect_str_eq(res(deep), "error");          /* nesting past 64 */
  memset(deep, '-', 80); deep[80] = '1'; deep[81] = 0;
  cr_expect_str_eq(res(deep), "error");
  char longx[300];
  memset(longx, '1', 299); longx[299] = 0;
  cr_expect_str_eq(res(longx), "error");         /* past 256 bytes */
}

static const char *splice(const char *t) {
  static char out[64];
  int k = lm_calc_splice(t, strlen(t), out, sizeof out);
  out[k] = 0;
  return out;
}

Test(calc, splice) {
  cr_expect_str_eq(splice("so <|calc|>77*33<|/calc|>"), " \xe2\x86\x92 2541");
  cr_expect_str_eq(splice("<|calc|>1+<|/calc|>"), " \xe2\x86\x92 error");
  cr_expect_str_eq(splice("<|calc|>1+1<|/calc|> \xe2\x86\x92 2 then"), "");           /* not at the end */
  cr_expect_str_eq(splice("<|calc|>1<|/calc|> x <|/calc|>"), "");                    /* no open call */
  cr_expect_str_eq(splice("<|calc|>1<|calc|>2*3<|/calc|>"), " \xe2\x86\x92 6");      /* the last opening */
  cr_expect_str_eq(splice("2*3<|/calc|>"), "");
  cr_expect_str_eq(splice("<|/calc|>"), "");
}
