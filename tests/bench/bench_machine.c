/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The machine line every benchmark prints first: cores, CPU model, RAM,
 * kernel, LMDB version and the load average it started with.
 */
#include "bench_machine.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

void bench_machine(void)
{
	char model[128] = "?";
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f != NULL) {
		char line[256];
		while (fgets(line, sizeof(line), f) != NULL) {
			if (strncmp(line, "model name", 10) == 0) {
				char *p = strchr(line, ':');
				snprintf(model, sizeof(model), "%.100s", p ? p + 2 : line);
				model[strcspn(model, "\n")] = 0;
				break;
			}
		}
		fclose(f);
	}
	double la[3] = {0};
	if (getloadavg(la, 3) < 0)
		la[0] = -1;
	struct utsname u;
	uname(&u);
	printf("machine: %ld cores (%s), %ld MiB RAM, Linux %s, LMDB %s\n", sysconf(_SC_NPROCESSORS_ONLN), model,
	       (long)(sysconf(_SC_PHYS_PAGES) / 1024 * sysconf(_SC_PAGESIZE) / 1024), u.release,
	       mdb_version(NULL, NULL, NULL));
	printf("load average before the run: %.2f %.2f %.2f (other work on the machine skews every number)\n", la[0],
	       la[1], la[2]);
}

double bench_mib_of(const char *dir, const char *file)
{
	char p[4096];
	if (snprintf(p, sizeof(p), "%s/%s", dir, file) >= (int)sizeof(p))
		return 0;
	struct stat st;
	return stat(p, &st) == 0 ? (double)st.st_blocks * 512 / 1048576 : 0;
}
