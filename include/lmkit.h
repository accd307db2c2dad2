/* lmkit.h — the public C API of lmkit.
 *
 * lmkit carries a language model through tokenize → pre-train → post-train →
 * use → study. Objects are opaque handles with init/free pairs; every function
 * that can fail returns lm_status (LM_OK == 0) and leaves a message naming the
 * file, field or value at fault in lm_last_error(). Nothing here exits or
 * aborts on bad input.
 *
 * A five-minute tour:
 *
 *     lm_tokenizer *tok;  lm_model *m;
 *     lm_tokenizer_load(&tok, "gpt2");             // or a directory, or "byte"
 *     lm_config cfg;  lm_config_default(&cfg, LM_ARCH_GPT2);
 *     cfg.vocab_size = lm_tokenizer_vocab_size(tok);
 *     cfg.n_layer = 4; cfg.n_head = 4; cfg.n_embd = 128; cfg.n_positions = 256;
 *     lm_model_create(&m, &cfg, 1337);             // GPT-2 initialisation
 *     lm_train_opts o;  lm_train_opts_default(&o);
 *     o.data = (const char *[]){"corpus.txt"}; o.n_data = 1; o.out_dir = "run";
 *     lm_train(m, tok, &o, NULL, NULL);            // saves run/ (a HF model dir)
 *     lm_gen_opts g;  lm_gen_opts_default(&g);
 *     lm_generate(m, tok, "Once upon a time", &g, print_piece, NULL);
 *     lm_model_free(m);  lm_tokenizer_free(tok);
 *
 * Model directories follow Hugging Face: config.json + model.safetensors +
 * tokenizer.json, so `transformers` loads what lmkit writes and vice versa.
 */
#ifndef LMKIT_H
#define LMKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status */
typedef enum {
  LM_OK = 0,
  LM_ERR_ARG,          /* a bad argument or option value */
  LM_ERR_IO,           /* a file could not be read or written */
  LM_ERR_FORMAT,       /* a file or request is malformed */
  LM_ERR_NOMEM,        /* an allocation failed */
  LM_ERR_UNSUPPORTED,  /* valid, but not something lmkit does (yet) */
  LM_ERR_RANGE,        /* a value out of its allowed range (e.g. context too long) */
} lm_status;

const char *lm_last_error(void);     /* message for the last failure on this thread */
void lm_clear_error(void);
const char *lm_status_str(lm_status st);

/* ---------------------------------------------------------------- config */
typedef enum { LM_ARCH_GPT2 = 0, LM_ARCH_BERT, LM_ARCH_T5, LM_ARCH_BART, LM_ARCH_LLAMA, LM_ARCH_MISTRAL, LM_ARCH_QWEN2,
               LM_ARCH_RNN, LM_ARCH_LSTM, LM_ARCH_NGRAM } lm_arch;   /* the last three: src/model/classic/ */
typedef enum { LM_NORM_LAYER = 0, LM_NORM_RMS } lm_norm_kind;
typedef enum { LM_ACT_GELU_TANH = 0, LM_ACT_GELU_ERF, LM_ACT_RELU, LM_ACT_SILU } lm_act_kind;

#define LM_MAX_EOS 8

/* One transformer, configured (DESIGN.md §3). Field names follow the GPT-2
 * Hugging Face config keys where one exists. */
typedef struct {
  lm_arch arch;
  int64_t vocab_size;
  int64_t n_positions;   /* longest context (learned position table size) */
  int64_t n_embd;        /* model width C */
  int64_t n_layer;
  int64_t n_head;
  int64_t n_inner;       /* FFN width; 0 means 4 * n_embd */
  int64_t n_kv_head;     /* key/value heads of grouped-query attention (Llama 3, Mistral); 0 means n_head */
  lm_norm_kind norm;
  int pre_ln;            /* 1: pre-LN (GPT-2); 0: post-LN (BERT) */
  lm_act_kind act;
  int causal;            /* 1: causal self-attention; 0: bidirectional with padding mask */
  int bias;              /* linear and norm biases present */
  int qkv_bias;          /* q, k, v projections have biases even without `bias` (Qwen2) */
  int glu;               /* gated FFN: act(x Wg^T) * (x Wu^T), then the down projection (SwiGLU with SiLU) */
  /* rotary position embeddings instead of a learned position table (Llama): rope_theta is the base
   * of the frequencies; rope_scaling 1 is Llama 3's (factor, low/high frequency factors, original
   * context), 0 none. */
  int rope;
  float rope_theta;
  int rope_scaling;
  float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
  int64_t rope_original_positions;
  int64_t sliding_window;    /* attention sees at most this many keys (Mistral); 0: all */
  /* dropout in training (never in eval or generation): on the embeddings, on the attention
   * probabilities, and on each residual branch (attention and FFN outputs); each in [0, 1) */
  float embd_pdrop, attn_pdrop, resid_pdrop;
  /* the dropout a family's classification heads apply before their classifier (BERT's
   * classifier_dropout); < 0: resid_pdrop (HF's null). Families without one ignore it. */
  float cls_pdrop;
  /* dropout on the FFN's activation, before its down projection (T5's dropout_rate, BART's
   * activation_dropout); families without it keep 0 */
  float act_pdrop;
  int tie_embeddings;    /* LM head shares the token embedding */
  float norm_eps;
  float init_std;        /* initializer_range */
  int64_t bos_token_id, eos_token_id;
  int64_t eos_token_ids[LM_MAX_EOS];  /* when config.json lists several (Llama 3 instruct): all of them, */
  int n_eos;                          /* eos_token_id being the first; 0 or 1: just eos_token_id */
  int64_t pad_token_id;      /* padding id (-1: none); decoders' sequence heads pool at the last non-pad token */
  /* the family's extras (its file in src/model/families/ says which it uses) */
  int64_t type_vocab_size;   /* segment embeddings (0: none; BERT) */
  int share_layers;          /* 1: every layer uses layer 0's weights (ALBERT-style; gradients summed) */
  /* encoder-decoder (T5, BART): n_enc_layer > 0 puts that many bidirectional encoder blocks before the
   * n_layer decoder blocks, each of which then has a cross-attention sub-layer over the encoder's output */
  int64_t n_enc_layer;
  int64_t decoder_start_token_id;  /* the decoder's first input (T5: pad; BART: eos) */
  int64_t head_dim;          /* attention head width (T5's d_kv); 0 means n_embd / n_head */
  int attn_unscaled;         /* attention scores are q.k, not q.k / sqrt(head_dim) (T5) */
  /* T5's relative position bias: rel_buckets > 0 buckets of the key - query distance (up to
   * rel_max_distance, log-spaced), one learned bias per bucket and head, computed once per stack and
   * shared by its layers; bidirectional in the encoder, causal in the decoder */
  int64_t rel_buckets, rel_max_distance;
  /* the head on top of the hidden states (src/model/heads.h) */
  int head;                  /* lm_head_kind; lm_config_default sets the family's own (LM for GPT-2) */
  int64_t num_labels;        /* classes of the classify / token heads (HF num_labels, len(id2label); 2) */
  /* the models transformers replaced (src/model/classic/; they have no general blocks, n_layer = 0) */
  int64_t rnn_layers;        /* recurrent layers of the rnn (Elman) and lstm families, of width n_embd */
  int64_t ngram_order;       /* the n-gram family's order N (1..8) */
} lm_config;

/* Heads: objects of their own on top of any family's hidden states (src/model/heads.h). Each
 * saves under its family's Hugging Face class: GPT2ForSequenceClassification, BertForPreTraining... */
typedef enum {
  LM_HEAD_PRETRAIN = 0,  /* MLM + pooler + NSP: BertForPreTraining */
  LM_HEAD_CLASSIFY,      /* sequence classification: pooled first token (encoders) or last non-pad token (decoders) */
  LM_HEAD_TOKENS,        /* a label per token: *ForTokenClassification */
  LM_HEAD_QA,            /* start/end span logits: *ForQuestionAnswering */
  LM_HEAD_LM,            /* next-token logits, tied or untied: GPT2LMHeadModel */
  LM_HEAD_MLM,           /* masked-LM logits only: BertForMaskedLM */
  LM_HEAD_SCALAR,        /* one number per sequence (reward, value): *ForSequenceClassification, num_labels 1 */
  LM_HEAD_COUNT
} lm_head_kind;


void lm_config_default(lm_config *cfg, lm_arch arch);
const char *lm_arch_name(lm_arch arch);

/* ---------------------------------------------------------------- tokenizer */
typedef struct lm_tokenizer lm_tokenizer;

/* `spec` is a directory (tokenizer.json, vocab.json+merges.txt, encoder.json+vocab.bpe),
 * the word "gpt2" (OpenAI's GPT-2 files) or the word "byte" (256 bytes + <|endoftext|>). */
lm_status lm_tokenizer_load(lm_tokenizer **out, const char *spec);
void lm_tokenizer_free(lm_tokenizer *tok);
lm_status lm_tokenizer_save(const lm_tokenizer *tok, const char *dir);
int64_t lm_tokenizer_vocab_size(const lm_tokenizer *tok);
int64_t lm_tokenizer_eot(const lm_tokenizer *tok);   /* end-of-text id, -1 if none */
/* Encoding flags (docs/tokenizer.md). */
#define LM_ENCODE_SPECIAL 1       /* match special-token text (<|endoftext|>, <s>, [CLS]) as those tokens;
                                     without it they are plain text (HF's encode_special_tokens); added
                                     tokens that are not special are matched either way */
#define LM_ENCODE_ADD_SPECIAL 2   /* add the tokenizer.json post-processor's tokens (Llama's <s> or
                                     <|begin_of_text|>, BERT's [CLS] ... [SEP]): HF's add_special_tokens=True.
                                     Tokenizers without a tokenizer.json post-processor add nothing */
/* Encodes len bytes with LM_ENCODE_* flags (0: plain text, nothing added; 1 = LM_ENCODE_SPECIAL).
 * *ids is malloc'ed (free with free()). */
lm_status lm_tokenizer_encode(const lm_tokenizer *tok, const char *text, size_t len, int flags,
                              uint32_t **ids, size_t *n_ids);
/* Decodes ids to bytes; *text is malloc'ed and NUL-terminated (*len excludes the NUL). */
lm_status lm_tokenizer_decode(const lm_tokenizer *tok, const uint32_t *ids, size_t n_ids, char **text, size_t *len);
#define LM_DECODE_SKIP_SPECIAL 1  /* leave special tokens out (HF's skip_special_tokens=True) */
lm_status lm_tokenizer_decode_ex(const lm_tokenizer *tok, const uint32_t *ids, size_t n_ids, int flags, char **text,
                                 size_t *len);

/* ---------------------------------------------------------------- model */
typedef struct lm_model lm_model;

lm_status lm_model_create(lm_model **out, const lm_config *cfg, uint64_t seed);
lm_status lm_model_load(lm_model **out, const char *dir);
lm_status lm_model_save(const lm_model *m, const char *dir);   /* config.json + model.safetensors, atomic */
void lm_model_free(lm_model *m);
const lm_config *lm_model_config(const lm_model *m);
int64_t lm_model_num_params(const lm_model *m);

/* ---------------------------------------------------------------- training */
/* The precision of the linear layers' matrix products (lm_train_opts.precision; src/kernels/mm.h):
 * fp32 through OpenBLAS, or bf16 inputs with fp32 accumulation through oneDNN. Master weights, the
 * AdamW state, attention, the loss and its softmax stay fp32 either way. */
typedef enum { LM_PRECISION_FP32 = 0, LM_PRECISION_BF16 } lm_precision;
/* BART's noising functions for --objective denoise (src/train/objectives/denoise.c) */
typedef struct {
  float mask_ratio;       /* text infilling: share of words hidden, each span one <mask> (0.3) */
  float poisson_lambda;   /* infilling span lengths ~ Poisson(lambda) words (3) */
  float permute;          /* sentence permutation: share of sentences shuffled (1) */
  float delete_ratio;     /* token deletion: share of tokens deleted (0) */
  float rotate;           /* document rotation: its probability (0) */
  float insert;           /* random insertion: random tokens added per token (0) */
} lm_denoise_opts;

typedef struct {
  const char *const *data; int n_data;  /* text files, or shard directories from `lmkit data prepare` */
  const char *out_dir;
  const char *resume_dir;               /* continue a run saved in this directory, bit-exactly */
  int64_t batch, context, grad_accum, steps, warmup;
  float lr, min_lr, weight_decay, clip, beta1, beta2, eps;
  int64_t eval_every, eval_batches, save_every, log_every;
  float val_fraction;
  uint64_t seed;
  int progress;                         /* draw a progress bar on stderr */
  int precision;                        /* lm_precision (fp32); bf16 falls back to fp32, with a note on
                                           stderr, where the CPU has no bf16 products */
  const char *objective;                /* "clm" (GPT, default), "mlm" or "mlm+nsp" (BERT) */
  float mlm_prob;                       /* share of tokens chosen for MLM (0.15) */
  lm_denoise_opts denoise;              /* "denoise" (BART): the noising (the paper's best: 30% infilling,
                                           every sentence permuted) */
  int64_t keep_checkpoints;             /* newest out_dir/checkpoint-N directories kept (3); 0 keeps all */
  int checkpoint_activations;           /* recompute each block's activations in backward (less memory,
                                           the same gradients bit for bit, one more forward per step) */
  struct lm_dist *dist;                 /* data parallelism: the MPI group (src/train/dist.h), or NULL: one process */
  int zero;                             /* 1: ZeRO-1, the AdamW state sharded across the group's ranks */
  double time_limit;                    /* seconds: after the first step that ends past it, the run evaluates,
                                           saves its state into out_dir and stops early (the schedule stays
                                           that of `steps`; --resume continues it); 0: no limit */
} lm_train_opts;

void lm_train_opts_default(lm_train_opts *o);

typedef struct { int64_t step; float train_loss; float val_loss; float lr; double tokens_per_sec; } lm_train_event;
typedef void (*lm_train_callback)(const lm_train_event *ev, void *user);

/* Trains `m` in place; tok (saved into out_dir) tokenizes text inputs. */
lm_status lm_train(lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o, lm_train_callback cb, void *user);

/* Mean next-token loss over the token stream of `files` (texts or shard dirs). */
lm_status lm_evaluate(lm_model *m, const lm_tokenizer *tok, const char *const *files, int n_files,
                      int64_t context, int64_t batch, double *mean_loss, int64_t *n_tokens);

/* ---------------------------------------------------------------- generation */
typedef struct {
  int64_t max_tokens;
  float temperature;    /* 0: greedy */
  int64_t top_k;        /* 0: off */
  float top_p;          /* 1: off */
  uint64_t seed;
  int stop_at_eot;
  /* More tokens that end generation as end-of-text does, unprinted: a chat template's end of turn
   * (<|im_end|>, <|eot_id|>, ...; src/infer/chat_generate.h finds them). NULL / 0: none. */
  const int32_t *stop_tokens;
  int n_stop_tokens;
  /* Past the model's context, generation goes on with a sliding window: when the KV cache is full,
   * the last half of the context is re-prefilled (a longer prompt keeps its last context tokens).
   * Called once, when that first happens, with lm_generate's user pointer; NULL: not told. */
  void (*on_window)(int64_t context, int64_t prompt_dropped, void *user);
  /* The calculator tool: when the generated text ends a call <|calc|>EXPR<|/calc|>, " → RESULT" is
   * evaluated (src/infer/calc.h), printed and fed to the model, and generation goes on. 0: off. */
  int calc;
  /* With calc: told of each splice (" → RESULT") right before the piece callback receives it, so
   * that a caller can show the tool call apart from the text (lmkit chat). NULL: not told. */
  void (*on_calc)(const char *splice, size_t len, void *user);
  /* 1: the prompt is plain text: add the tokenizer's post-processor tokens (Llama's <s> or
   * <|begin_of_text|>), as HF's tokenizer(prompt) does. 0 (default): the prompt is used as is, as a
   * chat template's rendering must be (it writes its own bos_token). */
  int add_special;
  /* 1: the KV cache holds f16 (half its memory and reads; attention computes in f32). 0: f32. */
  int kv_f16;
  /* Beam search (src/infer/beam.h, HF's semantics): beams >= 1 keeps that many hypotheses and prints
   * the best (1 = greedy); 0 (default): sample. A hypothesis scores sum log p / length^length_penalty
   * (1.0); early_stopping: stop as soon as `beams` are finished; no_repeat_ngram N > 0: no n-gram twice. */
  int beams;
  float length_penalty;
  int early_stopping;
  int no_repeat_ngram;
} lm_gen_opts;

void lm_gen_opts_default(lm_gen_opts *o);
/* Called with each decoded piece as soon as it is complete UTF-8; return non-zero to stop. */
typedef int (*lm_piece_callback)(const char *piece, size_t len, void *user);
typedef struct {
  int64_t prompt_tokens, generated_tokens;
  double prefill_sec, decode_sec;
  int32_t stop_token;   /* the end-of-text or stop token that ended generation; -1: max_tokens or the callback */
} lm_gen_stats;
/* Generates from `prompt` (special tokens in it are honoured) with a KV cache.
 * Longer than the model's context, it slides (see on_window). stats may be NULL. */
lm_status lm_generate(lm_model *m, const lm_tokenizer *tok, const char *prompt, const lm_gen_opts *o,
                      lm_piece_callback cb, void *user, lm_gen_stats *stats);

/* ---------------------------------------------------------------- system */
void lm_set_threads(int n);   /* OpenMP + OpenBLAS; n <= 0 means all cores */
int lm_get_threads(void);

#ifdef __cplusplus
}
#endif
#endif
