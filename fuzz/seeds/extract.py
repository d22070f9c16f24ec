#!/usr/bin/env python3
"""Seeds the fuzz corpora from the project's tests and example files.

Writes fuzz/corpus/<target>/seed-<hash> files (content-addressed, so reruns add nothing
new): string literals from the unit tests of each parser, the example configs, and wire
messages built here like the ones the integration tests send. Run from the repository
root: python3 fuzz/seeds/extract.py. `cargo fuzz cmin` then keeps only the ones that add
coverage.
"""
import hashlib
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

LIT = re.compile(
    r"""(?<![\w'])(?:(?P<raw>b?r(?P<h>#*)"(?P<rbody>.*?)"(?P=h))|(?P<plain>b?"(?P<body>(?:[^"\\]|\\.)*)"))""",
    re.S,
)


def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = s[i + 1]
        i += 2
        if n == "\n":
            while i < len(s) and s[i] in " \t\n\r":
                i += 1
        elif n == "n":
            out += b"\n"
        elif n == "t":
            out += b"\t"
        elif n == "r":
            out += b"\r"
        elif n == "0":
            out += b"\0"
        elif n == "x":
            out.append(int(s[i:i + 2], 16))
            i += 2
        elif n == "u":
            end = s.index("}", i)
            out += chr(int(s[i + 1:end], 16)).encode()
            i = end + 1
        else:
            out += n.encode()
    return bytes(out)


def literals(path, min_len=1):
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    for m in LIT.finditer(text):
        if m.group("raw"):
            b = m.group("rbody").encode()
        else:
            try:
                b = unescape(m.group("body"))
            except (ValueError, IndexError):
                continue
        if len(b) >= min_len:
            yield b


def files(*paths):
    for p in paths:
        full = p if os.path.isabs(p) else os.path.join(ROOT, p)
        if os.path.isfile(full):
            yield open(full, "rb").read()


def rust_files(directory):
    for name in sorted(os.listdir(os.path.join(ROOT, directory))):
        if name.endswith(".rs"):
            yield os.path.join(directory, name)


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    n = 0
    for s in seeds:
        if len(s) > 64 * 1024:
            continue
        name = "seed-" + hashlib.sha1(s).hexdigest()[:16]
        p = os.path.join(d, name)
        if not os.path.exists(p):
            open(p, "wb").write(s)
            n += 1
    print(f"{target}: {n} new seeds")


def msg(tag, body=b""):
    return tag + struct.pack(">I", 4 + len(body)) + body


def cstr(s):
    return s + b"\0"


# Client-to-server messages, as the protocol tests send them.
def frontend_msgs():
    parse_named = msg(b"P", cstr(b"s1") + cstr(b"SELECT 1") + b"\0\0")
    parse_unnamed = msg(b"P", cstr(b"") + cstr(b"SELECT $1::int") + b"\0\x01\0\0\0\x17")
    bind = msg(b"B", cstr(b"") + cstr(b"s1") + b"\0\0" + b"\0\x01" + b"\0\0\0\x01" + b"7" + b"\0\0")
    bind_unnamed = msg(b"B", cstr(b"p") + cstr(b"") + b"\0\0\0\0\0\0")
    describe = msg(b"D", b"S" + cstr(b"s1"))
    describe_p = msg(b"D", b"P" + cstr(b""))
    execute = msg(b"E", cstr(b"") + b"\0\0\0\0")
    close = msg(b"C", b"S" + cstr(b"s1"))
    sync = msg(b"S")
    flush = msg(b"H")
    query = msg(b"Q", cstr(b"SELECT 1"))
    return [
        query,
        parse_named + sync,
        parse_named + flush + msg(b"P", cstr(b"s2") + cstr(b"SELECT 1") + b"\0\0") + sync,
        parse_unnamed + bind_unnamed + describe_p + execute + sync,
        parse_named + bind + describe + execute + close + sync,
        msg(b"Q", cstr(b"COPY t FROM STDIN")) + msg(b"d", b"1\t2\n") + msg(b"c"),
        msg(b"Q", cstr(b"COPY t FROM STDIN")) + msg(b"f", cstr(b"no")),
        msg(b"F", b"\0\0\0\x01\0\0\0\0\0\0"),
        msg(b"X"),
        msg(b"B", cstr(b"") + cstr(b"s1") + b"\0\0\0\x01\0\x01\0\0") + b"x" * 200,
        msg(b"p", cstr(b"secret")),
    ]


# Server-to-client messages. Backend inputs start with the piece size, then a byte of
# count (low 4 bits), max_prepared_statements (bits 4-5) and failed transaction (bit 6),
# then that many client-message choices (see fuzz_targets/backend.rs).
def backend_msgs():
    def err(code, text, sev=b"ERROR"):
        return msg(b"E", b"S" + cstr(sev) + b"V" + cstr(sev) + b"C" + cstr(code) + b"M" + cstr(text) + b"\0")

    rfq = lambda s: msg(b"Z", s)
    rows = msg(b"T", b"\0\x01" + cstr(b"a") + b"\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0")
    data = msg(b"D", b"\0\x01\0\0\0\x011")
    done = msg(b"C", cstr(b"SELECT 1"))
    stream = [
        msg(b"1") + msg(b"2") + rows + data + done + rfq(b"I"),
        msg(b"1") + rfq(b"I"),
        msg(b"3") + rfq(b"I"),
        msg(b"t", b"\0\0") + msg(b"n") + rfq(b"T"),
        err(b"0A000", b"cached plan must not change result type") + rfq(b"E"),
        err(b"26000", b'prepared statement "pgweir_1" does not exist') + rfq(b"I"),
        err(b"57P01", b"terminating connection due to administrator command", b"FATAL"),
        msg(b"S", cstr(b"TimeZone") + cstr(b"UTC")) + msg(b"N", b"SWARNING\0Mhm\0\0") + rfq(b"I"),
        msg(b"G", b"\0\0\0") + msg(b"d", b"x") + done + rfq(b"I"),
        msg(b"A", b"\0\0\0\x01" + cstr(b"chan") + cstr(b"payload")),
        msg(b"K", b"\0\0\0\x01\0\0\0\x02") + msg(b"R", b"\0\0\0\0"),
        msg(b"s") + msg(b"I") + rfq(b"I"),
    ]
    heads = [
        b"\x05\x02\x02\x0d",  # named Parse, Sync; no renaming
        b"\x05\x13\x02\x0d\x03",  # renaming: Parse, Sync... (choice bytes follow)
        b"\x07\x15\x02\x03\x04\x0b\x0d",  # Parse, Bind, Describe, Execute, Sync
        b"\x03\x13\x01\x03\x0d",  # unnamed Parse, Bind, Sync
        b"\x09\x12\x05\x0d",  # Close, Sync
        b"\x02\x12\x06\x08",  # DEALLOCATE, DISCARD ALL
        b"\x40\x52\x02\x0d",  # failed transaction
        b"\x04\x12\x0a\x0c",  # fail_query, query
        b"\x04\x11\x07",  # deallocate_parse
    ]
    return [h + s for h in heads for s in stream[:6]] + [b"\x3f\x00" + s for s in stream]


# Relay inputs: a flags byte, then segments of [2-byte header: top bit = from the server,
# low 15 bits = length][bytes] (see fuzz_targets/relay.rs).
def relay_msgs():
    def seg(side, data):
        return struct.pack(">H", (0x8000 if side == "s" else 0) | len(data)) + data

    def err(code, text, sev=b"ERROR"):
        return msg(b"E", b"S" + cstr(sev) + b"V" + cstr(sev) + b"C" + cstr(code) + b"M" + cstr(text) + b"\0")

    q = lambda sql: msg(b"Q", cstr(sql))
    z = lambda s: msg(b"Z", s)
    rows = msg(b"T", b"\0\x01" + cstr(b"a") + b"\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0")
    data = msg(b"D", b"\0\x01\0\0\0\x011")
    done = lambda tag: msg(b"C", cstr(tag))
    parse = lambda name, sql: msg(b"P", cstr(name) + cstr(sql) + b"\0\0")
    bind = lambda name: msg(b"B", cstr(b"") + cstr(name) + b"\0\0\0\0\0\0")
    desc = lambda name: msg(b"D", b"S" + cstr(name))
    close = lambda name: msg(b"C", b"S" + cstr(name))
    execute = msg(b"E", cstr(b"") + b"\0\0\0\0")
    sync = msg(b"S")
    conversations = [
        [("c", q(b"SELECT 1")), ("s", rows + data + done(b"SELECT 1") + z(b"I"))],
        [("c", parse(b"s1", b"SELECT 1") + bind(b"s1") + desc(b"s1") + execute + sync),
         ("s", msg(b"1") + msg(b"2") + msg(b"t", b"\0\0") + rows + data + done(b"SELECT 1") + z(b"I")),
         ("c", bind(b"s1") + execute + sync), ("s", msg(b"2") + data + done(b"SELECT 1") + z(b"I")),
         ("c", close(b"s1") + sync), ("s", msg(b"3") + z(b"I"))],
        [("c", parse(b"", b"SELECT $1") + bind(b"") + execute + sync),
         ("s", msg(b"1") + msg(b"2") + data + done(b"SELECT 1") + z(b"I"))],
        [("c", q(b"BEGIN")), ("s", done(b"BEGIN") + z(b"T")),
         ("c", q(b"SELECT x")), ("s", err(b"42703", b"column x does not exist") + z(b"E")),
         ("c", parse(b"s2", b"SELECT 2") + sync), ("s", err(b"25P02", b"aborted") + z(b"E")),
         ("c", q(b"ROLLBACK")), ("s", done(b"ROLLBACK") + z(b"I"))],
        [("c", q(b"SET pgweir.route = 'replica'")), ("c", q(b"SELECT 1")),
         ("s", rows + data + done(b"SELECT 1") + z(b"I")),
         ("c", q(b"INSERT INTO t VALUES (1)")), ("s", done(b"INSERT 0 1") + z(b"I"))],
        [("c", parse(b"s1", b"SELECT 1") + sync), ("s", msg(b"1") + z(b"I")),
         ("c", q(b"DEALLOCATE s1")), ("s", msg(b"3") + z(b"I")),
         ("c", q(b"DISCARD ALL")), ("s", done(b"DISCARD ALL") + z(b"I"))],
        [("c", q(b"SET search_path = a; SET app.tenant = 'x'")),
         ("s", done(b"SET") + msg(b"S", cstr(b"search_path") + cstr(b"a")) + done(b"SET") + z(b"I"))],
        [("c", q(b"LISTEN x")), ("s", done(b"LISTEN") + z(b"I")),
         ("c", q(b"LOAD 'auto_explain'")), ("s", done(b"LOAD") + z(b"I"))],
        [("s", err(b"57P01", b"terminating connection", b"FATAL"))],
        [("c", q(b"SELECT 1")), ("s", err(b"57P01", b"terminating connection", b"FATAL"))],
        [("c", q(b"COPY t FROM STDIN")), ("s", msg(b"G", b"\0\0\0")),
         ("c", msg(b"d", b"1\n") + sync + msg(b"c")), ("s", done(b"COPY 1") + z(b"I"))],
        [("c", parse(b"s1", b"SELECT 1") + bind(b"s1") + execute + sync),
         ("s", err(b"0A000", b"cached plan must not change result type") + z(b"I")),
         ("c", parse(b"", b"DEALLOCATE s1") + bind(b"") + execute + sync),
         ("s", err(b"26000", b'prepared statement "pgweir_1" does not exist') + z(b"I"))],
        [("c", msg(b"F", b"\0\0\0\x01\0\0\0\0\0\0") + msg(b"X"))],
    ]
    out = []
    for flags in (0x0D, 0x01, 0x00, 0x02, 0x3D, 0x1D, 0x8D, 0x4D, 0x05):
        for conv in conversations:
            out.append(bytes([flags]) + b"".join(seg(side, d) for side, d in conv))
    return out


def startup_msgs():
    v3 = struct.pack(">I", 196608)
    return [
        v3 + b"user\0u\0database\0d\0options\0-c a=b\0\0",
        v3 + b"user\0u\0options\0-c search_path=a\\ b --work-mem=4MB -cx=y\0application_name\0psql\0\0",
        v3 + b"user\0u\0replication\0true\0_pq_.x\0y\0\0",
        struct.pack(">I", 196610) + b"user\0u\0\0",
        struct.pack(">I", 80877103),
        struct.pack(">I", 80877104),
        struct.pack(">I", 80877102) + b"\0\0\0\x01\0\0\0\x02",
        struct.pack(">I", 131072) + b"user\0u\0\0",
    ]


def scram_msgs():
    # flags byte, then client-first \0 client-final \0 server-first \0 server-final.
    salt = b"AAECAwQFBgcICQoLDA0ODw=="
    proof = b"dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    sf = b"r=%Nabc,s=" + salt + b",i=4096"
    out = []
    for flags, first, cb in [
        (0, b"n,,n=,r=rOprNGfwEbeRWgbNEkqO", b"biws"),
        (0, b"y,,n=u,r=abc", b"eSws"),
        (5, b"p=tls-server-end-point,,n=,r=abc",
         b"cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="),
        (4, b"y,,n=,r=abc", b"eSws"),
        (0, b"n,a=x,n=,r=abc", b"biws"),
        (0, b"n,,m=ext,n=,r=abc", b"biws"),
    ]:
        final = b"c=" + cb + b",r=%N,p=" + proof
        for gs2 in (0, 8, 16):
            out.append(bytes([flags | gs2]) + first + b"\0" + final + b"\0" + sf + b"\0v=" + proof)
    out.append(b"\0" + b"n,,n=,r=x\0c=biws,r=%N,ext=1,p=" + proof + b"\0" + sf + b"\0e=invalid-proof")
    return out


SQL_SEEDS = [
    b"SELECT 1",
    b"select * from t where a = 'it''s' -- c\n",
    b"BEGIN; SET LOCAL work_mem = '4MB'; COMMIT",
    b"SELECT $tag$ body $tag$, E'\\x', U&'\\0041', \"id\"",
    b"/* a /* nested */ comment */ WITH x AS (SELECT 1) SELECT * FROM x",
    b"SET pgweir.route = 'replica'",
]
CONFIG_SEED = (b"[pgweir]\nlisten_port = 6432\nunix_socket_mode = \"0770\"\n"
               b"[pool]\ndefault_pool_size = 20\nquery_wait_timeout = \"2s\"\n"
               b"[databases.app]\nhost = \"127.0.0.1\"\nreplicas = [{ host = \"10.0.0.2\" }]\n"
               b"[users.u]\npassword = \"${PW}\"\n")
HBA_SEED = (b"local all all peer\nhost all @admins 10.0.0.0/8 scram-sha-256\n"
            b"hostssl \"My Db\",x all ::1/128 cert\nhost all all 192.168.0.1 255.255.255.0 md5 \\\n")
USERLIST_SEED = b"\"alice\" \"md5d41d8cd98f00b204e9800998ecf8427e\"\n\"b\"\"ob\" \"pw\"\n"
INI_SEED = (b"[databases]\napp = host=db port=5433 dbname='a b' pool_size=3\n"
            b"* = host=x\n[pgbouncer]\nlisten_addr = *\n;comment\n%include other.ini\n")


def main():
    write("frontend", (bytes([c]) + m for m in frontend_msgs() for c in (63, 3)))
    write("backend", backend_msgs())
    write("relay", relay_msgs())
    write("startup", startup_msgs())
    write("scram", scram_msgs())
    sql = list(SQL_SEEDS)
    for f in list(rust_files("src/sql/tests")) + ["benches/classify.rs"]:
        sql += [b for b in literals(f, 3) if re.search(rb"[A-Za-z]", b)]
    write("sql", sql)
    admin = [b"SET query_wait_timeout TO 'a''b';", b"SHOW \"pools\""]
    admin += [b for b in literals("src/admin/parse.rs", 3) if re.match(rb"\s*[A-Za-z]", b)]
    write("admin", admin)
    hba = [HBA_SEED + b"\0alice\n@admins\n"]
    hba += [b + b"\0alice\n" for b in literals("src/auth/hba_tests.rs", 8) if b"\n" in b or b" all " in b]
    hba += [b + b"\0alice\n" for b in files("tests/hba.conf")]
    write("hba", hba)
    users = [USERLIST_SEED, b"host=db port=5 dbname='a \\' b' x=y"]
    users += list(files("/etc/pgbouncer/userlist.txt"))
    for f in ("src/auth/userlist.rs", "src/auth/secret.rs", "src/convert/connstr.rs"):
        users += list(literals(f, 3))
    write("userlist", users)
    config = [CONFIG_SEED]
    config += list(files("config/pgweir.toml", "docker/pgweir.toml"))
    for f in rust_files("src/config/tests"):
        config += [b for b in literals(f, 10) if b"[" in b and b"=" in b]
    write("config", config)
    ini = [INI_SEED + b"\0[databases]\nb = host=h2\n"]
    ini += [b + b"\0" for b in files("/etc/pgbouncer/pgbouncer.ini")]
    for f in ("src/convert/tests.rs", "src/convert/ini.rs", "tests/it/convert.rs"):
        ini += [b + b"\0[pgbouncer]\npool_mode = session\n" for b in literals(f, 10) if b"[" in b and b"=" in b]
    write("pgbouncer_ini", ini)


if __name__ == "__main__":
    sys.exit(main())
