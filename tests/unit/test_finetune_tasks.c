/* test_finetune_tasks.c — the data side of token classification and question
 * answering (src/train/objectives/tokcls.c, qa.c): CoNLL parsing and its
 * errors, entity-level F1 on hand-made tag sequences, SQuAD parsing with bad
 * answer spans counted, context tokens with byte offsets and the char -> token
 * span mapping, SQuAD's answer normalisation, exact match and F1. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "tokenizer/tokenizer.h"
#include "train/finetune_tasks.h"

#define S(x) x, strlen(x)

Test(conll, sentences_docstart_crlf) {
  const char *txt = "\xEF\xBB\xBF-DOCSTART- -X- -X- O\n\n"
                    "John NNP B-PER\r\nlives VBZ O\r\nin IN O\r\nParis NNP B-LOC\r\n\r\n\r\n"
                    "Mary\tI-PER\nSmith\tI-PER\n";   /* tabs, no trailing blank line */
  lm_cls_labels L = {0};
  lm_conll c;
  cr_assert_eq(lm_conll_parse(S(txt), "a.conll", &L, 1, &c), LM_OK, "%s", lm_last_error());
  cr_assert_eq(c.n, 2);
  cr_assert_eq(c.woff[1], 4);
  cr_assert_eq(c.woff[2], 6);
  cr_assert_str_eq(c.words[0], "John");
  cr_assert_str_eq(c.words[3], "Paris");
  cr_assert_str_eq(c.words[5], "Smith");
  cr_assert_eq(c.lines[0], 3);
  cr_assert_eq(c.lines[1], 9);
  cr_assert_eq(L.n, 4);   /* in order of first appearance; -DOCSTART- adds none */
  cr_assert_str_eq(L.names[0], "B-PER");
  cr_assert_str_eq(L.names[1], "O");
  cr_assert_str_eq(L.names[2], "B-LOC");
  cr_assert_str_eq(L.names[3], "I-PER");
  cr_assert_eq(c.tags[3], 2);
  lm_conll_free(&c);

  /* eval: an unseen tag names file:line */
  const char *ev = "Bob B-PER\nworks O\nat O\nACME B-ORG\n";
  cr_assert_neq(lm_conll_parse(S(ev), "dev.conll", &L, 0, &c), LM_OK);
  cr_assert(strstr(lm_last_error(), "dev.conll:4") && strstr(lm_last_error(), "B-ORG"), "%s", lm_last_error());
  cr_assert_eq(L.n, 4);
  /* a line without a tag column */
  const char *bad = "Bob B-PER\nworks\n";
  cr_assert_neq(lm_conll_parse(S(bad), "x.conll", &L, 1, &c), LM_OK);
  cr_assert(strstr(lm_last_error(), "x.conll:2") && strstr(lm_last_error(), "no tag column"), "%s", lm_last_error());
  /* nothing but blank lines */
  cr_assert_neq(lm_conll_parse(S("\n\n-DOCSTART- O\n\n"), "e.conll", &L, 1, &c), LM_OK);
  cr_assert(strstr(lm_last_error(), "no sentences"), "%s", lm_last_error());
  lm_cls_labels_free(&L);
}

static const char *NAMES[] = {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"};

static lm_ner_counts count(const int32_t *g, const int32_t *p, int64_t n) {
  lm_ner_counts c = {0};
  lm_ner_count(NAMES, 5, g, p, n, &c);
  return c;
}

Test(ner, entity_f1) {
  /* gold: [B-PER I-PER] O [B-LOC] [B-LOC I-LOC] */
  int32_t g[] = {1, 2, 0, 3, 3, 4};
  lm_ner_counts c = count(g, g, 6);
  cr_assert_eq(c.gold, 3); cr_assert_eq(c.pred, 3); cr_assert_eq(c.correct, 3);
  double p, r, f;
  lm_ner_scores(&c, &p, &r, &f);
  cr_assert_float_eq(f, 1.0, 1e-12);
  /* pred cuts the first entity short, and merges the two LOC (I-LOC continues B-LOC) */
  int32_t q[] = {1, 0, 0, 3, 4, 4};
  c = count(g, q, 6);
  cr_assert_eq(c.pred, 2); cr_assert_eq(c.correct, 0);
  cr_assert_eq(c.words_correct, 4);
  /* I-X after O starts an entity (lenient IOB); I-LOC after I-PER starts a new one */
  int32_t h[] = {0, 2, 2, 4, 0};
  int32_t k[] = {0, 1, 2, 3, 0};
  c = count(h, k, 5);
  cr_assert_eq(c.gold, 2); cr_assert_eq(c.pred, 2); cr_assert_eq(c.correct, 2);
  /* one of two right, one spurious: P = 1/2, R = 1/2 */
  int32_t g2[] = {1, 0, 3, 0};
  int32_t p2[] = {1, 0, 1, 0};
  c = count(g2, p2, 4);
  lm_ner_scores(&c, &p, &r, &f);
  cr_assert_float_eq(p, 0.5, 1e-12); cr_assert_float_eq(r, 0.5, 1e-12); cr_assert_float_eq(f, 0.5, 1e-12);
  /* nothing predicted, nothing gold: scores are 0, not NaN */
  int32_t z[] = {0, 0};
  c = count(z, z, 2);
  lm_ner_scores(&c, &p, &r, &f);
  cr_assert_eq(f, 0.0);
}

Test(squad, parse_and_bad_spans) {
  const char *js =
    "{\"version\": \"1.1\", \"data\": [{\"title\": \"t\", \"paragraphs\": [{"
    "\"context\": \"Caf\xC3\xA9 Paris opened in 1900 .\","
    "\"qas\": ["
    " {\"id\": \"q1\", \"question\": \"When?\", \"answers\": [{\"text\": \"1900\", \"answer_start\": 21},"
    "                                                   {\"text\": \"1900\", \"answer_start\": 3}]},"   /* mismatch */
    " {\"id\": \"q2\", \"question\": \"Where?\", \"answers\": [{\"text\": \"Paris\", \"answer_start\": 5}]},"
    " {\"id\": \"q3\", \"question\": \"Out?\", \"answers\": [{\"text\": \"x\", \"answer_start\": 999}]}"  /* outside */
    "]}]}]}";
  lm_squad s;
  cr_assert_eq(lm_squad_parse(S(js), "s.json", &s), LM_OK, "%s", lm_last_error());
  cr_assert_eq(s.n, 2);
  cr_assert_eq(s.n_bad_answers, 2);
  cr_assert_eq(s.n_skipped, 1);
  cr_assert_str_eq(s.qid[0], "q1");
  cr_assert_eq(s.aoff[1] - s.aoff[0], 1);
  /* "Café" is 4 characters but 5 bytes: character 21 is byte 22 */
  cr_assert_eq(s.astart[0], 22);
  cr_assert_eq(s.aend[0], 26);
  cr_assert_eq(s.astart[1], 6);
  lm_squad_free(&s);

  cr_assert_neq(lm_squad_parse(S("{\"data\": [ {\"paragraphs\": [}"), "bad.json", &s), LM_OK);
  cr_assert(strstr(lm_last_error(), "bad.json: malformed JSON"), "%s", lm_last_error());
  cr_assert_neq(lm_squad_parse(S("{\"data\": [{\"paragraphs\": [{\"context\": 3, \"qas\": []}]}]}"), "t.json", &s), LM_OK);
  cr_assert(strstr(lm_last_error(), "t.json: data[0].paragraphs[0]"), "%s", lm_last_error());
  cr_assert_neq(lm_squad_parse(S("[1, 2]"), "l.json", &s), LM_OK);
  cr_assert_eq(lm_utf8_char_to_byte(S("a\xC3\xA9z"), 2), 3);
  cr_assert_eq(lm_utf8_char_to_byte(S("a\xC3\xA9z"), 3), 4);
  cr_assert_eq(lm_utf8_char_to_byte(S("a\xC3\xA9z"), 4), -1);
}

Test(qa, char_span_to_tokens) {
  /* "the ball is red ." with tokens the|ball|is|r|ed|. */
  int64_t st[] = {0, 4, 9, 12, 13, 16}, en[] = {3, 8, 11, 13, 15, 17};
  int64_t a, b;
  cr_assert_eq(lm_qa_char_span_to_tokens(st, en, 6, 12, 15, &a, &b), 0);
  cr_assert_eq(a, 3); cr_assert_eq(b, 4);
  cr_assert_eq(lm_qa_char_span_to_tokens(st, en, 6, 4, 11, &a, &b), 0);
  cr_assert_eq(a, 1); cr_assert_eq(b, 2);
  cr_assert_eq(lm_qa_char_span_to_tokens(st, en, 6, 13, 14, &a, &b), 0);   /* inside one token */
  cr_assert_eq(a, 4); cr_assert_eq(b, 4);
  cr_assert_eq(lm_qa_char_span_to_tokens(st, en, 6, 20, 22, &a, &b), -1);

  /* byte-level tokenizer: one token per byte, offsets exact, words after the first carry their space */
  lm_tokenizer *tok;
  cr_assert_eq(lm_tokenizer_load(&tok, "byte"), LM_OK, "%s", lm_last_error());
  const char *ctx = "ab  cd\ne";
  uint32_t *ids; int64_t *s0, *e0, n;
  cr_assert_eq(lm_qa_tokenize_context(tok, S(ctx), &ids, &s0, &e0, &n), LM_OK);
  cr_assert_eq(n, 7);   /* a b | ' ' c d | ' ' e */
  cr_assert_eq(ids[2], ' ');
  cr_assert_eq(s0[2], 4); cr_assert_eq(e0[2], 4);   /* the added space is empty in the context */
  cr_assert_eq(s0[3], 4); cr_assert_eq(e0[3], 5);
  cr_assert_eq(s0[6], 7); cr_assert_eq(e0[6], 8);
  cr_assert_eq(lm_qa_char_span_to_tokens(s0, e0, n, 4, 6, &a, &b), 0);
  cr_assert_eq(a, 3); cr_assert_eq(b, 4);
  free(ids); free(s0); free(e0);
  lm_tokenizer_free(tok);
}

Test(squad, normalize_em_f1) {
  char *x = lm_squad_normalize("  The  Eiffel-Tower, in PARIS!  ");
  cr_assert_str_eq(x, "eiffeltower in paris");
  free(x);
  x = lm_squad_normalize("a an the theatre");
  cr_assert_str_eq(x, "theatre");
  free(x);
  cr_assert_eq(lm_squad_em("the Red.", "red"), 1.0);
  cr_assert_eq(lm_squad_em("red ball", "red"), 0.0);
  cr_assert_float_eq(lm_squad_f1("red ball", "red"), 2.0 / 3.0, 1e-12);   /* P 1/2, R 1 */
  cr_assert_float_eq(lm_squad_f1("the big red ball", "a red ball today"), 2.0 / 3.0, 1e-12);
  cr_assert_eq(lm_squad_f1("blue", "red"), 0.0);
  cr_assert_eq(lm_squad_f1("the", "a"), 0.0);   /* both empty after normalising: 0 (v1.1 script) */
  cr_assert_float_eq(lm_squad_f1("red red", "red"), 2.0 / 3.0, 1e-12);   /* counts are a multiset */
}
