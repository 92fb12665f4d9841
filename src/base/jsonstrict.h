/*
 * JSON text held to RFC 8259 before cJSON reads it. cJSON is lenient: it skips NUL bytes
 * as white space, reads "09" and "1.", keeps raw control characters in strings, turns
 * 1e309 into infinity, cuts a string at an escaped NUL, and keeps the first of two equal
 * keys. What it would read differently from another parser must not reach the service.
 */
#ifndef GLR_JSONSTRICT_H
#define GLR_JSONSTRICT_H

#include <cjson/cJSON.h>
#include <stddef.h>

/*
 * The deepest nesting jsonstrict_check() follows: it keeps one small frame per level on
 * the stack (to name the field at fault), so a caller's own bound must not exceed it.
 */
#define JSONSTRICT_DEPTH_MAX 64

/* Bytes of one key quoted in a message; a longer key is cut. */
#define JSONSTRICT_KEY_QUOTE_MAX 64

/*
 * Checks in one pass, without allocating, that len bytes of text (not NUL-terminated; a
 * NUL among them is a fault, not an end) are one JSON value as RFC 8259 writes it, with
 * arrays and objects nested at most depth_max levels (at most JSONSTRICT_DEPTH_MAX), and
 * every string UTF-8. Returns GLR_OK; GLR_EMALFORMED for text that is not strict JSON,
 * err saying what and at which byte ("byte 17: leading zero in a number"); or, for text
 * that is well formed, GLR_EINVAL naming the field ("lr[1]", "config.patience") of a
 * number beyond the range of a double (1e309; one that rounds to zero is fine) or of a
 * string that holds an escaped NUL (\u0000), which no C string can carry.
 */
int jsonstrict_check(const char *text, size_t len, size_t depth_max, char *err);

/*
 * Checks that no object in tree, at any depth, has two members of the same name (after
 * the escapes are read: "a" and "\u0061" are the same). what names the tree in the
 * message ("the request body"). Returns GLR_OK, GLR_EMALFORMED naming the key and the
 * object that holds it, or GLR_ENOMEM.
 */
int jsonstrict_unique_keys(const cJSON *tree, const char *what, char *err);

#endif
