/*
 * A Postfix policy server in C that answers DUNNO to every request, at once:
 * the floor under any policy service, for benchmarks/mta.py.
 *
 *   dunno_policy PORT         listens on 127.0.0.1:PORT, a thread per connection
 *
 * No parsing beyond finding the empty line that ends a request.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REPLY "action=DUNNO\n\n"

static void *serve(void *arg)
{
    int fd = (int)(long)arg, one = 1;
    char buf[65536];
    size_t have = 0;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        char *p = buf, *end;

        if (n <= 0)
            break;
        have += (size_t)n;
        while ((end = memmem(p, (size_t)(buf + have - p), "\n\n", 2)) != NULL) {
            if (write(fd, REPLY, sizeof REPLY - 1) != (ssize_t)(sizeof REPLY - 1))
                goto done;
            p = end + 2;
        }
        have = (size_t)(buf + have - p);
        memmove(buf, p, have);
        if (have == sizeof buf)
            break; /* not a policy client */
    }
done:
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr;
    int s, one = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 64;
    }
    s = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s, 128) != 0) {
        perror("dunno_policy");
        return 69;
    }
    for (;;) {
        pthread_t t;
        int c = accept(s, NULL, NULL);

        if (c < 0)
            continue;
        if (pthread_create(&t, NULL, serve, (void *)(long)c) != 0)
            close(c);
        else
            pthread_detach(t);
    }
}
