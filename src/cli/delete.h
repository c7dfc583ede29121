/* SPDX-License-Identifier: Apache-2.0 */
/* delete.h: how delete, prune and merge report what they deleted. */
#ifndef KNIB_CLI_DELETE_H
#define KNIB_CLI_DELETE_H

#include <stdbool.h>

#include <jansson.h>

#include "chain/chain.h"

/* One line per step on stdout ("(dry run) " first with dry_run), or
 * with json (an array) one object per step appended to it.  -1 with
 * set_error on ENOMEM. */
int cli_steps_report (const char *vm, const chain_delete_step_vector *steps,
                      bool dry_run, json_t *json)
  __attribute__ ((warn_unused_result));

#endif
