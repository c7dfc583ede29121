/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz.h: what every fuzz target shares: libFuzzer's entry point and input helpers. */
#ifndef KNIB_FUZZ_H
#define KNIB_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Each target defines it; libFuzzer (make fuzz) or fuzz/replay.c (make
 * check) calls it once per input.  It returns 0 and keeps nothing
 * between calls but a fixture made once. */
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* An anonymous in-memory file holding the input, at offset 0; aborts
 * when the system refuses one (that is no finding of the target). */
int fuzz_memfd (const uint8_t *data, size_t size);

/* "/proc/self/fd/FD": the memfd as a path, for readers that open one. */
#define FUZZ_FD_PATH_MAX 32
void fuzz_fd_path (int fd, char path[FUZZ_FD_PATH_MAX]);

/* The input as a regular file in a private directory (made once,
 * removed at exit), for readers that refuse to follow a symbolic link
 * such as /proc/self/fd/N.  Returns its path; aborts when the system
 * refuses (no finding of the target). */
const char *fuzz_file (const uint8_t *data, size_t size);

/* The same under the name a reader looks for (the directory is
 * fuzz_file_dir ()); a target uses one name only. */
const char *fuzz_file_named (const char *name, const uint8_t *data,
                             size_t size);
const char *fuzz_file_dir (void);

/* Write all of data to fd (a socket: never SIGPIPE); errors are ignored,
 * the reader sees the stream end. */
void fuzz_send_all (int fd, const void *data, size_t size);

#endif
