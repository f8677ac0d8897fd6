/*
 * vspcd: virtual serial port concentrator for VMware vSphere.
 *
 * main() parses the command line, opens the listeners, writes
 * STATE_DIR/listeners.json once all of them are up, and runs the event loop
 * until SIGTERM or SIGINT, then tears everything down in order.
 */
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "vspcd.h"

#define VSPCD_DEFAULT_STATE_DIR	"/var/lib/vspcd"

struct config cfg;
struct event_base *ev_base;

static struct evconnlistener *vm_listeners[VSPCD_MAX_VM_LISTEN];
static int vm_ports[VSPCD_MAX_VM_LISTEN];
static struct evconnlistener *frontdoor;

enum {
	OPT_STATE_DIR = 256,
	OPT_VM_LISTEN,
	OPT_CLIENT_LISTEN,
	OPT_CLIENT_BIND,
	OPT_PORT_RANGE,
	OPT_ADMIN_LISTEN,
	OPT_SERVICE_URI,
	OPT_PORT_EXPIRY,
	OPT_IDENT_TIMEOUT,
	OPT_CLIENT_QUEUE,
	OPT_VMOTION_DRAIN,
	OPT_VMOTION_PEER,
	OPT_VMOTION_COMPLETE,
	OPT_VMOTION_SOURCE,
	OPT_VMOTION_HOLD,
	OPT_VERSION,
};

static const struct option longopts[] = {
	{ "foreground",		no_argument,		NULL, 'd' },
	{ "verbose",		no_argument,		NULL, 'v' },
	{ "help",		no_argument,		NULL, 'h' },
	{ "state-dir",		required_argument,	NULL, OPT_STATE_DIR },
	{ "vm-listen",		required_argument,	NULL, OPT_VM_LISTEN },
	{ "client-listen",	required_argument,	NULL, OPT_CLIENT_LISTEN },
	{ "client-bind",	required_argument,	NULL, OPT_CLIENT_BIND },
	{ "port-range",		required_argument,	NULL, OPT_PORT_RANGE },
	{ "admin-listen",	required_argument,	NULL, OPT_ADMIN_LISTEN },
	{ "service-uri",	required_argument,	NULL, OPT_SERVICE_URI },
	{ "port-expiry",	required_argument,	NULL, OPT_PORT_EXPIRY },
	{ "ident-timeout",	required_argument,	NULL, OPT_IDENT_TIMEOUT },
	{ "client-queue",	required_argument,	NULL, OPT_CLIENT_QUEUE },
	{ "vmotion-drain-ms",	required_argument,	NULL, OPT_VMOTION_DRAIN },
	{ "vmotion-peer-timeout", required_argument,	NULL, OPT_VMOTION_PEER },
	{ "vmotion-complete-timeout", required_argument, NULL,
	    OPT_VMOTION_COMPLETE },
	{ "vmotion-source-drain", required_argument,	NULL, OPT_VMOTION_SOURCE },
	{ "vmotion-hold-max",	required_argument,	NULL, OPT_VMOTION_HOLD },
	{ "version",		no_argument,		NULL, OPT_VERSION },
	{ NULL,			0,			NULL, 0 }
};

/* Print usage and exit. */
static __dead void
usage(int status)
{
	fprintf(status ? stderr : stdout,
"usage: vspcd [-d|--foreground] [-v|--verbose] [--state-dir DIR]\n"
"             [--vm-listen ADDR:PORT]... [--client-listen ADDR:PORT|off]\n"
"             [--client-bind ADDR] [--port-range LO-HI|0|off]\n"
"             [--admin-listen ADDR:PORT|off] [--service-uri PREFIX]...\n"
"             [--port-expiry SECONDS] [--ident-timeout SECONDS]\n"
"             [--client-queue BYTES] [--vmotion-drain-ms MS]\n"
"             [--vmotion-peer-timeout S] [--vmotion-complete-timeout S]\n"
"             [--vmotion-source-drain S] [--vmotion-hold-max BYTES]\n"
"             [--version] [--help]\n"
"\n"
"defaults: --state-dir " VSPCD_DEFAULT_STATE_DIR " --vm-listen 0.0.0.0:13370\n"
"          --client-listen 127.0.0.1:13371 --client-bind 127.0.0.1\n"
"          --port-range 50000-50999 --admin-listen 127.0.0.1:13372\n"
"          --service-uri vSPC.py --port-expiry 86400 --ident-timeout 10\n"
"          --client-queue 262144 --vmotion-drain-ms 1500\n"
"          --vmotion-peer-timeout 60 --vmotion-complete-timeout 60\n"
"          --vmotion-source-drain 10 --vmotion-hold-max 1048576\n");
	exit(status);
}

/* Parse a number option or exit. */
static long long
number(const char *s, long long lo, long long hi, const char *what)
{
	const char *errstr;
	long long v;

	v = strtonum(s, lo, hi, &errstr);
	if (errstr != NULL) {
		fprintf(stderr, "vspcd: %s '%s' is %s\n", what, s, errstr);
		exit(1);
	}
	return (v);
}

/* Parse --port-range. */
static void
parse_port_range(const char *s)
{
	char buf[64], *dash;

	if (strcmp(s, "off") == 0) {
		cfg.port_lo = -1;
		return;
	}
	if (strcmp(s, "0") == 0 || strcmp(s, "0-0") == 0) {
		cfg.port_lo = cfg.port_hi = 0;
		return;
	}
	strlcpy(buf, s, sizeof buf);
	if ((dash = strchr(buf, '-')) == NULL) {
		fprintf(stderr, "vspcd: --port-range wants LO-HI, 0 or off\n");
		exit(1);
	}
	*dash++ = '\0';
	cfg.port_lo = (int)number(buf, 1, 65535, "port range start");
	cfg.port_hi = (int)number(dash, cfg.port_lo, 65535, "port range end");
}

/* Fill cfg from defaults and the command line. */
static void
parse_args(int argc, char **argv)
{
	int ch;

	cfg.state_dir = VSPCD_DEFAULT_STATE_DIR;
	cfg.client_listen = "127.0.0.1:13371";
	cfg.client_bind = "127.0.0.1";
	cfg.port_lo = 50000;
	cfg.port_hi = 50999;
	cfg.admin_listen = "127.0.0.1:13372";
	cfg.port_expiry = 86400;
	cfg.ident_timeout = 10;
	cfg.client_queue = 256 * 1024;
	cfg.vm_queue = 64 * 1024;
	cfg.prebind_max = 16 * 1024;
	cfg.sb_max = TELNET_SB_MAX;
	cfg.vmotion_drain_ms = 1500;
	cfg.vmotion_peer_timeout = 60;
	cfg.vmotion_complete_timeout = 60;
	cfg.vmotion_source_drain = 10;
	cfg.vmotion_hold_max = 1024 * 1024;

	while ((ch = getopt_long(argc, argv, "dvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			cfg.foreground = 1;
			break;
		case 'v':
			cfg.verbose++;
			break;
		case 'h':
			usage(0);
		case OPT_STATE_DIR:
			cfg.state_dir = optarg;
			break;
		case OPT_VM_LISTEN:
			if (cfg.n_vm_listen == VSPCD_MAX_VM_LISTEN) {
				fprintf(stderr, "vspcd: too many --vm-listen\n");
				exit(1);
			}
			cfg.vm_listen[cfg.n_vm_listen++] = optarg;
			break;
		case OPT_CLIENT_LISTEN:
			cfg.client_listen = strcmp(optarg, "off") == 0 ?
			    NULL : optarg;
			break;
		case OPT_CLIENT_BIND:
			cfg.client_bind = optarg;
			break;
		case OPT_PORT_RANGE:
			parse_port_range(optarg);
			break;
		case OPT_ADMIN_LISTEN:
			cfg.admin_listen = strcmp(optarg, "off") == 0 ?
			    NULL : optarg;
			break;
		case OPT_SERVICE_URI:
			if (cfg.n_service_uri == VSPCD_MAX_URIS) {
				fprintf(stderr, "vspcd: too many "
				    "--service-uri\n");
				exit(1);
			}
			cfg.service_uri[cfg.n_service_uri++] = optarg;
			break;
		case OPT_PORT_EXPIRY:
			cfg.port_expiry = (int)number(optarg, 1, 86400 * 3650,
			    "--port-expiry");
			break;
		case OPT_IDENT_TIMEOUT:
			cfg.ident_timeout = (int)number(optarg, 1, 3600,
			    "--ident-timeout");
			break;
		case OPT_CLIENT_QUEUE:
			cfg.client_queue = (size_t)number(optarg, 4096,
			    1LL << 30, "--client-queue");
			break;
		case OPT_VMOTION_DRAIN:
			cfg.vmotion_drain_ms = (int)number(optarg, 1, 600000,
			    "--vmotion-drain-ms");
			break;
		case OPT_VMOTION_PEER:
			cfg.vmotion_peer_timeout = (int)number(optarg, 1, 86400,
			    "--vmotion-peer-timeout");
			break;
		case OPT_VMOTION_COMPLETE:
			cfg.vmotion_complete_timeout = (int)number(optarg, 1,
			    86400, "--vmotion-complete-timeout");
			break;
		case OPT_VMOTION_SOURCE:
			cfg.vmotion_source_drain = (int)number(optarg, 1, 3600,
			    "--vmotion-source-drain");
			break;
		case OPT_VMOTION_HOLD:
			cfg.vmotion_hold_max = (size_t)number(optarg, 4096,
			    1LL << 30, "--vmotion-hold-max");
			break;
		case OPT_VERSION:
			printf("vspcd %s\n", VSPC_VERSION);
			exit(0);
		default:
			usage(1);
		}
	}
	if (optind != argc)
		usage(1);
	if (cfg.n_vm_listen == 0)
		cfg.vm_listen[cfg.n_vm_listen++] = "0.0.0.0:13370";
	if (cfg.n_service_uri == 0)
		cfg.service_uri[cfg.n_service_uri++] = "vSPC.py";
}

/* SIGTERM/SIGINT: leave the loop. */
static void
signal_exit_cb(evutil_socket_t sig, short events, void *arg)
{
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopexit(ev_base, NULL);
}

/* Raise the open-file limit to the hard maximum. */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit NOFILE");
	}
}

/* Write listeners.json once every listener is up. */
static void
write_listeners(int client_port, int admin_port)
{
	char buf[1024];
	size_t o;
	int i;

	o = (size_t)snprintf(buf, sizeof buf, "{\"pid\": %ld, \"vm\": [",
	    (long)getpid());
	for (i = 0; i < cfg.n_vm_listen && o < sizeof buf; i++)
		o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%d",
		    i ? ", " : "", vm_ports[i]);
	if (o < sizeof buf)
		o += (size_t)snprintf(buf + o, sizeof buf - o, "], ");
	if (o < sizeof buf)
		o += (size_t)(cfg.client_listen != NULL ?
		    snprintf(buf + o, sizeof buf - o, "\"client\": %d, ",
		    client_port) :
		    snprintf(buf + o, sizeof buf - o, "\"client\": null, "));
	if (o < sizeof buf)
		o += (size_t)(cfg.admin_listen != NULL ?
		    snprintf(buf + o, sizeof buf - o, "\"admin\": %d}\n",
		    admin_port) :
		    snprintf(buf + o, sizeof buf - o, "\"admin\": null}\n"));
	if (o >= sizeof buf)
		fatalx("listeners.json too long");
	if (util_write_file_atomic(cfg.state_dir, "listeners.json", buf,
	    o) == -1)
		fatal("%s/listeners.json", cfg.state_dir);
}

int
main(int argc, char **argv)
{
	struct event *sigterm, *sigint;
	int i, client_port = 0, admin_port = 0;

	parse_args(argc, argv);
	log_init(cfg.foreground, cfg.verbose > 0 ? LOG_LVL_DEBUG :
	    LOG_LVL_INFO, "vspcd");
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	if (mkdir(cfg.state_dir, 0750) == -1 && errno != EEXIST)
		fatal("mkdir %s", cfg.state_dir);
	if (!cfg.foreground && daemon(1, 0) == -1)
		fatal("daemon");

	if ((ev_base = event_base_new()) == NULL)
		fatalx("event_base_new");
	sigterm = evsignal_new(ev_base, SIGTERM, signal_exit_cb, NULL);
	sigint = evsignal_new(ev_base, SIGINT, signal_exit_cb, NULL);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);

	for (i = 0; i < cfg.n_vm_listen; i++) {
		vm_listeners[i] = listener_open(cfg.vm_listen[i], "vm",
		    vm_accept_cb, NULL, &vm_ports[i]);
		if (vm_listeners[i] == NULL)
			exit(1);
	}
	if (cfg.client_listen != NULL) {
		frontdoor = listener_open(cfg.client_listen, "front door",
		    client_accept_frontdoor_cb, NULL, &client_port);
		if (frontdoor == NULL)
			exit(1);
	}
	if (cfg.admin_listen != NULL &&
	    admin_start(cfg.admin_listen, &admin_port) == -1)
		exit(1);
	write_listeners(client_port, admin_port);
	log_info("vspcd %s ready", VSPC_VERSION);

	event_base_dispatch(ev_base);

	/* Teardown, in order: listeners, clients, VMs, ports. */
	admin_stop();
	for (i = 0; i < cfg.n_vm_listen; i++)
		evconnlistener_free(vm_listeners[i]);
	if (frontdoor != NULL)
		evconnlistener_free(frontdoor);
	client_close_all();
	vm_close_all();
	port_free_all();
	event_free(sigterm);
	event_free(sigint);
	event_base_free(ev_base);
	log_info("exited cleanly");
	return (0);
}
