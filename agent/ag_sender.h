/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sender: ships encoded Batch messages to the collector over nng REQ/REP
 * with a small window of requests in flight (one nng context per slot), and
 * reports each batch's Ack back on the agent's libuv loop.
 *
 * nng completes sends and receives on its own threads; those completions are
 * queued under a lock and handed to the loop with uv_async_send, so every
 * callback below runs on the loop thread. A batch whose round trip fails
 * (collector down, timeout, connection lost) is resent by the sender itself,
 * with exponential backoff and jitter, until it is acked or cancelled; the
 * collector's dedupe on (agent id, seq) makes resending safe.
 */
#ifndef AG_SENDER_H
#define AG_SENDER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ag_sender ag_sender;

typedef struct ag_sender_opts {
	const char *collector_url; /* tcp://HOST:PORT (borrowed for the call) */
	unsigned window;           /* batches in flight (default 4, max 64) */
	uint64_t ack_timeout_ms;   /* resend when no ack arrives within this (default 10 s) */
	uint64_t backoff_min_ms;   /* first retry delay (default 100 ms) */
	uint64_t backoff_max_ms;   /* cap on the retry delay (default 5 s) */
	size_t max_ack_bytes;      /* NNG_OPT_RECVMAXSZ (default 64 KiB) */
} ag_sender_opts;

void ag_sender_opts_default(ag_sender_opts *o);

/* Outcome of one batch, as the collector answered it. */
typedef enum ag_ack {
	AG_ACK_STORED = 0,   /* committed (now or earlier: duplicate) */
	AG_ACK_REJECTED = 1, /* the collector can never store it */
} ag_ack;

/*
 * Called on the loop thread once per batch given to ag_sender_send, with
 * the final outcome; msg is the collector's reason (borrowed, valid during
 * the call) for a rejection.
 */
typedef void (*ag_sender_cb)(void *ud, uint64_t seq, ag_ack ack, const char *msg);

/*
 * Creates a sender on loop and starts dialing (in the background: a
 * collector that is down is retried, not an error). Caller frees with
 * ag_sender_close(). Returns 0, -EINVAL for a bad URL, or a TL_E* code.
 */
int ag_sender_new(uv_loop_t *loop, const ag_sender_opts *o, ag_sender **out);

/* Free window slots: how many more batches ag_sender_send accepts now. */
unsigned ag_sender_free_slots(const ag_sender *s);

/*
 * Sends an encoded Batch (its seq given again for the callback). Takes
 * ownership of data (malloc'd) on success; on error the caller keeps it.
 * Returns 0, TL_EFULL when no slot is free, or TL_ECLOSED after close.
 */
int ag_sender_send(ag_sender *s, uint64_t seq, uint8_t *data, size_t len, ag_sender_cb cb, void *ud);

typedef struct ag_sender_stats {
	uint64_t batches_sent; /* first transmissions */
	uint64_t retries;      /* retransmissions */
	uint64_t acked;
	uint64_t duplicates;
	uint64_t rejected;
	unsigned in_flight;
} ag_sender_stats;

void ag_sender_stats_get(const ag_sender *s, ag_sender_stats *out);

/*
 * Closes the socket; batches still in flight are dropped without their
 * callbacks. Frees s once its handles are closed. Accepts NULL.
 */
void ag_sender_close(ag_sender *s);

#endif
