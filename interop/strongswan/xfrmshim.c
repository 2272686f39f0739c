/*
 * xfrmshim: LD_PRELOAD library that lets strongSwan's charon finish CHILD_SA
 * negotiation on a kernel without ESP (no esp4/esp6, no kernel GCM).
 *
 * charon installs every negotiated CHILD_SA through XFRM netlink. On such a
 * kernel XFRM_MSG_NEWSA/UPDSA fail ("Requested AEAD algorithm not found",
 * ENOSYS); charon then deletes the CHILD_SA and answers the peer with
 * NO_PROPOSAL_CHOSEN, so IKE completes but no CHILD_SA ever does. Tests only
 * need charon's view of the negotiation (SPIs, keys, rekeys), not ESP moved
 * by the kernel, so this library makes the SA-changing requests succeed
 * without changing anything:
 *
 *   - XFRM_MSG_NEWSA, UPDSA, DELSA, NEWPOLICY, UPDPOLICY, DELPOLICY have
 *     their type rewritten to NLMSG_NOOP. The kernel's netlink_rcv_skb
 *     skips control types and, as charon sets NLM_F_ACK, answers with an
 *     ACK carrying error 0 and the same sequence number: charon sees success.
 *   - XFRM_MSG_UPDSA completes a "larval" SA that XFRM_MSG_ALLOCSPI (which
 *     works without ESP) left in the kernel. Left alone, that larval SA hard-
 *     expires after net.core.xfrm_acq_expires (30 s) and the kernel's
 *     XFRM_MSG_EXPIRE makes charon tear the CHILD_SA down. So before the
 *     no-op the shim deletes the larval SA itself over a private socket.
 *   - Everything else (ALLOCSPI, GETSA, policy/SA flushes, rtnetlink, the
 *     IKE UDP sockets) passes through untouched.
 *
 * Only NETLINK_XFRM sockets are touched (checked with SO_DOMAIN/SO_PROTOCOL
 * on each send; a few calls per SA, so no caching). The caller's buffer is
 * never modified: rewritten messages go out from a copy.
 *
 * XFRMSHIM_VERBOSE=1 logs each rewrite to stderr (SPIs only; the SA body,
 * which holds the keys, is never printed).
 *
 * Build: gcc -O2 -Wall -Wextra -fPIC -shared -o xfrmshim.so xfrmshim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <arpa/inet.h>
#include <unistd.h>

typedef ssize_t (*sendto_fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);

static sendto_fn real_sendto;
static send_fn real_send;
static sendmsg_fn real_sendmsg;
static int verbose;

__attribute__((constructor)) static void shim_init(void)
{
	real_sendto = (sendto_fn)dlsym(RTLD_NEXT, "sendto");
	real_send = (send_fn)dlsym(RTLD_NEXT, "send");
	real_sendmsg = (sendmsg_fn)dlsym(RTLD_NEXT, "sendmsg");
	const char *v = getenv("XFRMSHIM_VERBOSE");
	verbose = v && *v && *v != '0';
	if (verbose)
		fprintf(stderr, "xfrmshim: loaded\n");
}

static int is_xfrm(int fd)
{
	int v;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l) != 0 || v != AF_NETLINK)
		return 0;
	l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &l) != 0 || v != NETLINK_XFRM)
		return 0;
	return 1;
}

static int neutralized(uint16_t type)
{
	switch (type) {
	case XFRM_MSG_NEWSA:
	case XFRM_MSG_UPDSA:
	case XFRM_MSG_DELSA:
	case XFRM_MSG_NEWPOLICY:
	case XFRM_MSG_UPDPOLICY:
	case XFRM_MSG_DELPOLICY:
		return 1;
	}
	return 0;
}

static const char *type_name(uint16_t type)
{
	switch (type) {
	case XFRM_MSG_NEWSA: return "NEWSA";
	case XFRM_MSG_UPDSA: return "UPDSA";
	case XFRM_MSG_DELSA: return "DELSA";
	case XFRM_MSG_NEWPOLICY: return "NEWPOLICY";
	case XFRM_MSG_UPDPOLICY: return "UPDPOLICY";
	case XFRM_MSG_DELPOLICY: return "DELPOLICY";
	}
	return "?";
}

/* Walks the netlink messages in buf; returns 1 if any needs rewriting. */
static int wants_rewrite(const void *buf, size_t len)
{
	const struct nlmsghdr *h = buf;
	size_t left = len;
	for (; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left))
		if (neutralized(h->nlmsg_type))
			return 1;
	return 0;
}

/*
 * Deletes the larval SA that an earlier ALLOCSPI created and that the UPDSA
 * in h would have completed. Errors are ignored: if the SA is already gone
 * there is nothing left to expire.
 */
static void delete_larval(const struct nlmsghdr *h)
{
	if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct xfrm_usersa_info)))
		return;
	const struct xfrm_usersa_info *info = NLMSG_DATA(h);
	struct {
		struct nlmsghdr h;
		struct xfrm_usersa_id id;
		/* room for an XFRMA_MARK copied from the UPDSA */
		char attrs[NLA_HDRLEN + NLA_ALIGN(sizeof(struct xfrm_mark))];
	} req;
	memset(&req, 0, sizeof(req));
	req.h.nlmsg_type = XFRM_MSG_DELSA;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	req.h.nlmsg_seq = 1;
	req.h.nlmsg_len = NLMSG_LENGTH(sizeof(req.id));
	req.id.daddr = info->id.daddr;
	req.id.spi = info->id.spi;
	req.id.family = info->family;
	req.id.proto = info->id.proto;

	/* The larval SA carries the mark of the ALLOCSPI; copy the UPDSA's. */
	const struct nlattr *a = (const void *)((const char *)info + NLA_ALIGN(sizeof(*info)));
	size_t left = h->nlmsg_len - NLMSG_LENGTH(NLA_ALIGN(sizeof(*info)));
	if (h->nlmsg_len < NLMSG_LENGTH(NLA_ALIGN(sizeof(*info))))
		left = 0;
	while (left >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= left) {
		if ((a->nla_type & NLA_TYPE_MASK) == XFRMA_MARK &&
		    a->nla_len == NLA_HDRLEN + sizeof(struct xfrm_mark)) {
			memcpy(req.attrs, a, a->nla_len);
			req.h.nlmsg_len = NLMSG_ALIGN(req.h.nlmsg_len) + NLA_ALIGN(a->nla_len);
			break;
		}
		size_t step = NLA_ALIGN(a->nla_len);
		if (step >= left)
			break;
		left -= step;
		a = (const void *)((const char *)a + step);
	}

	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
	if (fd < 0)
		return;
	struct timeval tv = {.tv_sec = 1};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	if (real_sendto(fd, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) >= 0) {
		char ack[512];
		ssize_t n = recv(fd, ack, sizeof(ack), 0);
		if (verbose) {
			int err = 0;
			const struct nlmsghdr *r = (const void *)ack;
			if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) && r->nlmsg_type == NLMSG_ERROR)
				err = ((const struct nlmsgerr *)NLMSG_DATA(r))->error;
			fprintf(stderr, "xfrmshim: deleted larval SA spi %08x: %s\n",
				ntohl(info->id.spi), err ? strerror(-err) : "ok");
		}
	}
	close(fd);
}

static void log_rewrite(const struct nlmsghdr *h)
{
	uint32_t spi = 0;
	switch (h->nlmsg_type) {
	case XFRM_MSG_NEWSA:
	case XFRM_MSG_UPDSA:
		if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct xfrm_usersa_info)))
			spi = ((const struct xfrm_usersa_info *)NLMSG_DATA(h))->id.spi;
		break;
	case XFRM_MSG_DELSA:
		if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct xfrm_usersa_id)))
			spi = ((const struct xfrm_usersa_id *)NLMSG_DATA(h))->spi;
		break;
	}
	fprintf(stderr, "xfrmshim: %s spi %08x seq %u -> NLMSG_NOOP\n",
		type_name(h->nlmsg_type), ntohl(spi), h->nlmsg_seq);
}

/* Rewrites the messages in buf (a private copy) in place. */
static void rewrite(void *buf, size_t len)
{
	struct nlmsghdr *h = buf;
	size_t left = len;
	for (; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
		if (!neutralized(h->nlmsg_type))
			continue;
		if (h->nlmsg_type == XFRM_MSG_UPDSA)
			delete_larval(h);
		if (verbose)
			log_rewrite(h);
		h->nlmsg_type = NLMSG_NOOP;
	}
}

/* Returns a rewritten copy of buf in *out (caller frees) or NULL. */
static void *rewritten_copy(int fd, const void *buf, size_t len)
{
	if (!buf || len < NLMSG_HDRLEN || !wants_rewrite(buf, len) || !is_xfrm(fd))
		return NULL;
	void *copy = malloc(len);
	if (!copy)
		return NULL;
	memcpy(copy, buf, len);
	rewrite(copy, len);
	return copy;
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags,
	       const struct sockaddr *addr, socklen_t alen)
{
	void *copy = rewritten_copy(fd, buf, len);
	ssize_t n = real_sendto(fd, copy ? copy : buf, len, flags, addr, alen);
	int e = errno;
	free(copy);
	errno = e;
	return n;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	void *copy = rewritten_copy(fd, buf, len);
	ssize_t n = real_send(fd, copy ? copy : buf, len, flags);
	int e = errno;
	free(copy);
	errno = e;
	return n;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	/* Netlink requests go out as one iovec; anything else is passed on. */
	if (!msg || msg->msg_iovlen != 1)
		return real_sendmsg(fd, msg, flags);
	void *copy = rewritten_copy(fd, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len);
	if (!copy)
		return real_sendmsg(fd, msg, flags);
	struct iovec iov = {.iov_base = copy, .iov_len = msg->msg_iov[0].iov_len};
	struct msghdr m = *msg;
	m.msg_iov = &iov;
	ssize_t n = real_sendmsg(fd, &m, flags);
	int e = errno;
	free(copy);
	errno = e;
	return n;
}
