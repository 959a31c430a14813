/* SPDX-License-Identifier: Apache-2.0 */
/* The machine description every benchmark prints before its results. */
#ifndef BENCH_MACHINE_H
#define BENCH_MACHINE_H

/* Prints cores, CPU model, RAM, kernel, LMDB version and the load average to stdout. */
void bench_machine(void);

/* The disk space dir/file takes (allocated blocks, not its length), in MiB; 0 when it cannot be read. */
double bench_mib_of(const char *dir, const char *file);

#endif
