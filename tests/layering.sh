#!/bin/sh
# The pure layers (src/lib, src/proto) must not touch sockets, clocks, the
# event loop or other I/O libraries.
root=${1:-.}
bad=$(grep -nE '#include <(event2/|sys/socket\.h|netinet/|openssl/|sqlite3\.h|yaml\.h|jansson\.h|time\.h|sys/time\.h)|[^_a-z](time|gettimeofday|clock_gettime|socket|read|write)\(' \
    "$root"/src/proto/*.c "$root"/src/proto/*.h 2>/dev/null)
if [ -n "$bad" ]; then
	echo "layering violation:"
	echo "$bad"
	exit 1
fi
echo "layering ok"
