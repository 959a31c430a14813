/* SPDX-License-Identifier: Apache-2.0 */
/* Hex encoding of ids and random id generation. */
#include "tl_id.h"

#include "tl_error.h"

#include <errno.h>
#include <sys/random.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int tl_hex_decode(const char *s, size_t slen, uint8_t *out, size_t outlen)
{
	if (slen != 2 * outlen)
		return TL_ELIMIT;
	for (size_t i = 0; i < slen; i++) {
		if (hexval(s[i]) < 0)
			return TL_EPARSE;
	}
	for (size_t i = 0; i < outlen; i++)
		out[i] = (uint8_t)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
	return 0;
}

void tl_hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

bool tl_id_is_zero(const uint8_t *id, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (id[i] != 0)
			return false;
	}
	return true;
}

int tl_random_bytes(uint8_t *out, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(out + got, n - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)r;
	}
	return 0;
}
