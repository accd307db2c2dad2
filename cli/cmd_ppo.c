/* cmd_ppo.c — `lmkit ppo`: RLHF with PPO and a value model, a row of the RL
 * command table in cli/cmd_grpo.c (the same code as `lmkit grpo` and
 * `lmkit rloo`; docs/rl.md). */
#include "train/rl.h"

int cli_rl_main(int algo, int argc, char **argv);   /* cli/cmd_grpo.c */

int cmd_ppo(int argc, char **argv) { return cli_rl_main(LM_RL_ALGO_PPO, argc, argv); }
