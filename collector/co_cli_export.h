/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `threadline export jaeger`: stored traces to an OTLP/HTTP endpoint or to
 * a Jaeger UI upload file (co_export.h does the re-framing, tl_otlp_push.h
 * the sending).
 */
#ifndef CO_CLI_EXPORT_H
#define CO_CLI_EXPORT_H

#include "co_cli.h"

/* `threadline export jaeger ...`. argv[0] is "export". Returns an exit code (co_cli.h). */
int co_cli_export(co_cli *cli, int argc, char **argv);

#endif
