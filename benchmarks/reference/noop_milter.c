/*
 * A libmilter milter in C that does nothing: the floor under any milter built
 * on libmilter (pymilter included), for benchmarks/mta.py.
 *
 *   noop_milter SPEC noop     the callbacks, no-reply flags and macro lists
 *                             extrusion's milter negotiates, each answering at once
 *   noop_milter SPEC accept   accept the connection at connect: nothing else is
 *                             ever sent, the least a milter attached to every
 *                             SMTP session can cost
 *
 * SPEC is libmilter's socket form (inet:PORT@127.0.0.1, unix:/path).
 */
#include <stdio.h>
#include <string.h>
#include <libmilter/mfapi.h>

static int accept_at_connect;

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long actions, unsigned long protocol,
                             unsigned long f2, unsigned long f3, unsigned long *pactions,
                             unsigned long *pprotocol, unsigned long *pf2, unsigned long *pf3)
{
    unsigned long want = SMFIP_NR_HELO | SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_NOEOH | SMFIP_NOUNKNOWN;

    (void)f2;
    (void)f3;
    if (!accept_at_connect)
        want |= SMFIP_NR_CONN; /* the reply at connect is the ACCEPT itself otherwise */
    *pactions = actions & (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST);
    *pprotocol = protocol & want;
    *pf2 = 0;
    *pf3 = 0;
    smfi_setsymlist(ctx, SMFIM_CONNECT, "{client_addr}");
    smfi_setsymlist(ctx, SMFIM_ENVFROM, "{auth_authen} i s");
    smfi_setsymlist(ctx, SMFIM_EOM, "i");
    return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
    (void)ctx, (void)host, (void)addr;
    return accept_at_connect ? SMFIS_ACCEPT : SMFIS_NOREPLY;
}

static sfsistat on_helo(SMFICTX *ctx, char *name) { (void)ctx, (void)name; return SMFIS_NOREPLY; }
static sfsistat on_envfrom(SMFICTX *ctx, char **argv) { (void)ctx, (void)argv; return SMFIS_CONTINUE; }
static sfsistat on_envrcpt(SMFICTX *ctx, char **argv) { (void)ctx, (void)argv; return SMFIS_CONTINUE; }
/* Answered for the same reason as extrusion's: an unanswered DATA macro packet
 * costs a delayed ACK (about 40 ms) on TCP. */
static sfsistat on_data(SMFICTX *ctx) { (void)ctx; return SMFIS_CONTINUE; }
static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
    (void)ctx, (void)name, (void)value;
    return SMFIS_NOREPLY;
}
static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    (void)ctx, (void)chunk, (void)len;
    return SMFIS_NOREPLY;
}
static sfsistat on_eom(SMFICTX *ctx) { (void)ctx; return SMFIS_CONTINUE; }

int main(int argc, char **argv)
{
    struct smfiDesc desc;

    if (argc != 3 || (strcmp(argv[2], "noop") != 0 && strcmp(argv[2], "accept") != 0)) {
        fprintf(stderr, "usage: %s SPEC noop|accept\n", argv[0]);
        return 64;
    }
    accept_at_connect = strcmp(argv[2], "accept") == 0;
    memset(&desc, 0, sizeof desc);
    desc.xxfi_name = "noop";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST;
    desc.xxfi_negotiate = on_negotiate;
    desc.xxfi_connect = on_connect;
    desc.xxfi_helo = on_helo;
    desc.xxfi_envfrom = on_envfrom;
    desc.xxfi_envrcpt = on_envrcpt;
    desc.xxfi_data = on_data;
    desc.xxfi_header = on_header;
    desc.xxfi_body = on_body;
    desc.xxfi_eom = on_eom;
    /* smfi_opensocket(1) removes a unix socket left by the previous milter on the path. */
    if (smfi_setconn(argv[1]) == MI_FAILURE || smfi_register(desc) == MI_FAILURE
        || smfi_opensocket(1) == MI_FAILURE) {
        fprintf(stderr, "%s: cannot use %s\n", argv[0], argv[1]);
        return 69;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
