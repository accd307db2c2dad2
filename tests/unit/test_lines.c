/* test_lines.c — lm_next_line, the one line walker every JSONL reader uses: line numbers count
 * blank lines, a leading UTF-8 BOM and the blanks around a line (CRLF's \r) are not returned. */
#include <criterion/criterion.h>
#include <string.h>
#include "base/base.h"

Test(lines, bom_crlf_blanks_and_numbers) {
  const char text[] = "\xEF\xBB\xBF{\"a\":1}\r\n\r\n  \t\n {\"b\":2} \r\n{\"c\":3}";
  const char *want[] = {"{\"a\":1}", "{\"b\":2}", "{\"c\":3}"};
  int64_t lines[] = {1, 4, 5};
  size_t at = 0, n;
  int64_t line = 0;
  const char *s;
  for (int k = 0; k < 3; k++) {
    cr_assert(lm_next_line(text, sizeof text - 1, &at, &line, &s, &n));
    cr_assert_eq(n, strlen(want[k]));
    cr_assert(!memcmp(s, want[k], n));
    cr_assert_eq(line, lines[k]);
  }
  cr_assert(!lm_next_line(text, sizeof text - 1, &at, &line, &s, &n));
}

Test(lines, empty_and_blank_only) {
  size_t at = 0, n;
  int64_t line = 0;
  const char *s;
  cr_assert(!lm_next_line("", 0, &at, &line, &s, &n));
  at = 0; line = 0;
  const char blank[] = "\xEF\xBB\xBF \r\n\n";
  cr_assert(!lm_next_line(blank, sizeof blank - 1, &at, &line, &s, &n));
  cr_assert_eq(line, 2);
}
