/* cmd_rloo.c — `lmkit rloo`: REINFORCE leave-one-out, a row of the RL command
 * table in cli/cmd_grpo.c (the same code as `lmkit grpo`; docs/rl.md). */
#include "train/rl.h"

int cli_rl_main(int algo, int argc, char **argv);   /* cli/cmd_grpo.c */

int cmd_rloo(int argc, char **argv) { return cli_rl_main(LM_RL_ALGO_RLOO, argc, argv); }
