/* config_io.h — the typed getters and the writer that family files use for
 * their config.json keys (implemented in config.c).
 *
 * Getters leave *out alone when the key is absent, so the family's defaults
 * stand; a wrong type or an impossible value is an error naming the file
 * (path), the key and the value. The writer emits transformers' layout:
 * 2-space indentation, one key per line; the family writes its keys in sorted
 * order, as transformers does, calling the generic pieces (architectures,
 * labels, the "lmkit" block) where they fall in that order. */
#ifndef LM_MODEL_CONFIG_IO_H
#define LM_MODEL_CONFIG_IO_H

#include <cjson/cJSON.h>
#include "lmkit.h"

#define LM_CFG_TRANSFORMERS_VERSION "4.40.0"   /* written into every config.json */

/* ---- reading */
lm_status lm_cfg_int(const cJSON *o, const char *key, int64_t *out, int nullable, int64_t null_value, const char *path);
lm_status lm_cfg_float(const cJSON *o, const char *key, float *out, const char *path);
lm_status lm_cfg_bool(const cJSON *o, const char *key, int *out, const char *path);
lm_status lm_cfg_str(const cJSON *o, const char *key, const char **out, const char *path);
lm_status lm_cfg_act(const cJSON *o, const char *key, lm_act_kind *out, const char *path);
lm_status lm_cfg_range(const char *path, const char *key, int64_t v, int64_t lo, int64_t hi);
const char *lm_cfg_type(const cJSON *j);   /* "a string", "a number", ... for messages */

/* ---- writing */
typedef struct lm_cfg_writer lm_cfg_writer;
struct lm_cfg_writer { char *p; size_t n, cap; int oom, first; };
void lm_cfgw_int(lm_cfg_writer *w, const char *key, int64_t v);
void lm_cfgw_bool(lm_cfg_writer *w, const char *key, int v);
void lm_cfgw_str(lm_cfg_writer *w, const char *key, const char *v);
void lm_cfgw_raw(lm_cfg_writer *w, const char *key, const char *v);    /* v is JSON text */
void lm_cfgw_id(lm_cfg_writer *w, const char *key, int64_t v);          /* null when < 0 */
void lm_cfgw_float(lm_cfg_writer *w, const char *key, float v);         /* shortest exact decimal */
void lm_cfg_float_text(float v, char s[40]);                             /* that decimal, as text (JSON number) */
const char *lm_cfg_act_name(lm_act_kind a);                              /* HF's name: "gelu_new", "gelu", "relu" */
/* the generic keys, each written where it falls in sorted order */
void lm_cfgw_architectures(lm_cfg_writer *w, const lm_config *c);       /* "architectures": [class of c->head] */
void lm_cfgw_id2label(lm_cfg_writer *w, const lm_config *c);            /* classify / tokens heads only */
void lm_cfgw_label2id(lm_cfg_writer *w, const lm_config *c);
void lm_cfgw_lmkit(lm_cfg_writer *w, const lm_config *c);               /* knobs HF has no key for, if any */
int lm_cfg_has_labels(const lm_config *c);                              /* the head writes id2label/label2id */

#endif
