/* train_counted.h — `lmkit train` for models fitted by counting (the n-gram family's fit hook,
 * family.h) instead of by the trainer's gradient steps: train_counted.c. */
#ifndef LM_CLI_TRAIN_COUNTED_H
#define LM_CLI_TRAIN_COUNTED_H

#include "lmkit.h"

/* Counts the training part of o->data (the last o->val_fraction held out), prints the validation loss
 * and bits per token, and saves the model and tokenizer to o->out_dir. Returns the exit code. */
int cli_train_counted(lm_model *m, const lm_tokenizer *tok, const lm_train_opts *o);

#endif
