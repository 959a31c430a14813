/* SPDX-License-Identifier: Apache-2.0 */
/* The CLI's query round trip: one nng REQ socket per command, with timeouts. */
#include "co_cli.h"

#include "tl_error.h"

#include <errno.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <string.h>

int co_cli_query(const co_cli *cli, const tl_pb_query_req *req, tl_pb_query_resp **resp)
{
	nng_socket sock;
	int rv;
	if ((rv = nng_req0_open(&sock)) != 0) {
		fprintf(stderr, "threadline: cannot open socket: %s\n", nng_strerror(rv));
		return TL_ETRANSPORT;
	}
	nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 512u << 20);
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, (nng_duration)cli->timeout_ms);
	nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, (nng_duration)cli->timeout_ms);
	if ((rv = nng_dial(sock, cli->collector, NULL, 0)) != 0) {
		fprintf(stderr, "threadline: cannot reach the collector at %s: %s\n", cli->collector, nng_strerror(rv));
		nng_close(sock);
		return TL_ETRANSPORT;
	}
	size_t len = threadline__v1__query_request__get_packed_size(req);
	nng_msg *m;
	if ((rv = nng_msg_alloc(&m, len)) != 0) {
		nng_close(sock);
		return -ENOMEM;
	}
	threadline__v1__query_request__pack(req, nng_msg_body(m));
	if ((rv = nng_sendmsg(sock, m, 0)) != 0) {
		nng_msg_free(m);
		fprintf(stderr, "threadline: sending to %s: %s\n", cli->collector, nng_strerror(rv));
		nng_close(sock);
		return TL_ETRANSPORT;
	}
	if ((rv = nng_recvmsg(sock, &m, 0)) != 0) {
		fprintf(stderr, "threadline: no answer from %s: %s\n", cli->collector, nng_strerror(rv));
		nng_close(sock);
		return rv == NNG_ETIMEDOUT ? TL_ETIMEOUT : TL_ETRANSPORT;
	}
	*resp = threadline__v1__query_response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
	nng_msg_free(m);
	nng_close(sock);
	if (*resp == NULL) {
		fprintf(stderr, "threadline: the collector's answer could not be decoded\n");
		return TL_EPROTO;
	}
	return 0;
}

int co_cli_opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

json_t *co_cli_load_doc(const char *text, size_t len, tl_errmsg *err)
{
	json_error_t je;
	json_t *doc = json_loadb(text, len, 0, &je);
	if (doc == NULL) {
		tl_errf(err, TL_EPROTO, "not JSON: line %d, column %d: %s", je.line, je.column, je.text);
		return NULL;
	}
	if (!json_is_object(doc)) {
		json_decref(doc);
		tl_errf(err, TL_EPROTO, "not a JSON object");
		return NULL;
	}
	return doc;
}

int co_cli_ask_json(const co_cli *cli, const tl_pb_query_req *q, const char *what, co_cli_json_print_fn print, void *ud)
{
	tl_pb_query_resp *resp = NULL;
	if (co_cli_query(cli, q, &resp) != 0)
		return CLI_UNREACHABLE;
	int code = CLI_OK;
	if (resp->code != 0) {
		fprintf(stderr, "threadline: %s\n",
		        resp->error != NULL && resp->error[0] ? resp->error : tl_strerror(resp->code));
		code = resp->code == TL_EINVALID ? CLI_USAGE : CLI_ERR;
	} else if (resp->json == NULL || resp->json[0] == '\0') {
		fprintf(stderr, "threadline: the collector answered without %s (is it older than this CLI?)\n", what);
		code = CLI_ERR;
	} else {
		tl_errmsg err = {{0}};
		int rc = print(cli, resp->json, strlen(resp->json), stdout, &err, ud);
		if (rc != 0) {
			fprintf(stderr, "threadline: cannot show the collector's answer: %s\n",
			        rc == TL_EPROTO ? err.msg : tl_strerror(rc));
			code = CLI_ERR;
		}
	}
	threadline__v1__query_response__free_unpacked(resp, NULL);
	return code;
}
