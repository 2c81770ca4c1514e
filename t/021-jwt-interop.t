#!/usr/bin/env perl
# shared/crest_jwt.c against a standard implementation: Debian's PyJWT.
# Tokens PyJWT mints verify with build/unit/jwt_tool and the other way round,
# for every algorithm both support; and the classic alg-confusion token (HS256
# MAC'd with the RSA public key's PEM as the secret) is refused as an alg
# mismatch.  Keys come from the openssl command line, in a temp dir.  Needs
# no nginx, PostgreSQL or Redis.
use strict;
use warnings;

use File::Spec;
use File::Temp ();
use FindBin;
use JSON::PP ();
use MIME::Base64 qw(encode_base64url);
use POSIX ();
use Test::More;

my $PYTHON = '/usr/bin/python3';    # Debian's, with python3-jwt
my $top = File::Spec->catdir($FindBin::Bin, File::Spec->updir);
my $tool = "$top/build/unit/jwt_tool";
my $json = JSON::PP->new->utf8->canonical;

plan skip_all => "$PYTHON with PyJWT and cryptography is needed "
    . '(apt-get install python3-jwt python3-cryptography)'
    unless system($PYTHON, '-c', 'import jwt, cryptography') == 0;
plan skip_all => 'the openssl command is needed'
    unless system('openssl version >/dev/null 2>&1') == 0;

is(system('make', '-s', '-C', $top, 'jwt-tool'), 0, 'jwt_tool builds')
    or BAIL_OUT('cannot build jwt_tool');

my $dir = File::Temp::tempdir(CLEANUP => 1);

# Runs a command with optional stdin; returns (exit status, stdout, stderr).
sub run {
    my ($stdin, @cmd) = @_;
    my ($in, $out, $err) = map { "$dir/run.$_" } qw(in out err);

    spew($in, $stdin // '');

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open(STDIN, '<', $in) && open(STDOUT, '>', $out)
            && open(STDERR, '>', $err) or POSIX::_exit(126);
        { exec {$cmd[0]} @cmd; }
        POSIX::_exit(127);
    }
    waitpid($pid, 0);
    my $status = $?;

    return ($status & 127 ? 128 + ($status & 127) : $status >> 8,
            slurp($out), slurp($err));
}

sub spew {
    my ($path, $data) = @_;
    open(my $fh, '>:raw', $path) or die "$path: $!";
    print {$fh} $data;
    close $fh or die "$path: $!";
}

sub slurp {
    my ($path) = @_;
    open(my $fh, '<:raw', $path) or die "$path: $!";
    local $/;
    my $data = <$fh>;
    return $data // '';
}

sub openssl {
    my ($rc, undef, $err) = run(undef, 'openssl', @_);
    die "openssl @_: $err" if $rc;
}

# --- keys ----------------------------------------------------------------
openssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048',
        '-out', "$dir/rsa.pem");
openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', "ec_paramgen_curve:$_->[1]",
        '-out', "$dir/$_->[0].pem")
    for ['ec256', 'P-256'], ['ec384', 'P-384'], ['ec521', 'P-521'];
openssl('genpkey', '-algorithm', 'ED25519', '-out', "$dir/ed.pem");
openssl('pkey', '-in', "$dir/$_.pem", '-pubout', '-out', "$dir/$_.pub")
    for qw(rsa ec256 ec384 ec521 ed);
openssl('rand', '-out', "$dir/hs.key", 64);

# alg => [signing key, verifying key]
my %keys = (
    (map { $_ => ['hs.key', 'hs.key'] } qw(HS256 HS384 HS512)),
    (map { $_ => ['rsa.pem', 'rsa.pub'] } qw(RS256 RS384 RS512 PS256 PS384 PS512)),
    ES256 => ['ec256.pem', 'ec256.pub'],
    ES384 => ['ec384.pem', 'ec384.pub'],
    ES512 => ['ec521.pem', 'ec521.pub'],
    EdDSA => ['ed.pem', 'ed.pub'],
);
my @algs = qw(HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512
              ES256 ES384 ES512 EdDSA);

# --- the PyJWT side: one process per batch of jobs -------------------------
spew("$dir/py.py", <<'PY');
import base64, hashlib, hmac, json, sys
import jwt

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

out = []
for job in json.load(sys.stdin):
    key = open(job["key"], "rb").read() if job.get("key") else None
    try:
        if job["op"] == "sign":
            tok = jwt.encode(json.loads(job["claims"]), key,
                             algorithm=job["alg"], headers=job.get("headers"))
            out.append({"token": tok})
        elif job["op"] == "verify":
            claims = jwt.decode(job["token"], key, algorithms=[job["alg"]])
            out.append({"claims": claims})
        elif job["op"] == "hmac":
            # by hand: PyJWT itself refuses a PEM key as an HMAC secret
            h = b64(json.dumps(job["header"]).encode())
            p = b64(job["claims"].encode())
            mac = hmac.new(key, (h + "." + p).encode(), hashlib.sha256)
            out.append({"token": h + "." + p + "." + b64(mac.digest())})
    except Exception as e:
        out.append({"error": type(e).__name__ + ": " + str(e)})
print(json.dumps(out))
PY

sub pyjwt {
    my (@jobs) = @_;
    my ($rc, $out, $err) = run($json->encode(\@jobs), $PYTHON, "$dir/py.py");
    die "py.py failed ($rc): $err" if $rc;
    return @{ $json->decode($out) };
}

my $now = time;
my %claims = (sub => 'user-1', role => 'admin', plan => 'pro',
              name => "Zo\x{eb}", iat => $now, exp => $now + 300);
my $claims = $json->encode(\%claims);                  # UTF-8, for argv
my $claims_text = JSON::PP->new->canonical->encode(\%claims);   # for jobs

sub tool {
    my ($rc, $out, $err) = run(undef, $tool, @_);
    chomp $out;
    return ($rc, $out, $err);
}

# --- PyJWT signs, jwt_tool verifies --------------------------------------
my %minted;
@minted{@algs} = pyjwt(map {
    { op => 'sign', alg => $_, key => "$dir/$keys{$_}[0]",
      claims => $claims_text }
} @algs);

for my $alg (@algs) {
    my $tok = $minted{$alg}{token};

    if (!ok(defined $tok, "PyJWT signs $alg")) {
        diag($minted{$alg}{error});
        next;
    }

    my ($rc, $out, $err) = tool('verify', $alg, "$dir/$keys{$alg}[1]", $tok);
    is($rc, 0, "PyJWT's $alg token verifies with jwt_tool") or diag($err);
    is_deeply($rc == 0 ? $json->decode($out) : undef, \%claims,
              "... with the same claims");
}

# --- jwt_tool signs, PyJWT verifies --------------------------------------
my (@signed, @jobs);
for my $alg (@algs) {
    my ($rc, $tok, $err) = tool('sign', $alg, "$dir/$keys{$alg}[0]", $claims);
    is($rc, 0, "jwt_tool signs $alg") or diag($err);
    push @jobs, { op => 'verify', alg => $alg, key => "$dir/$keys{$alg}[1]",
                  token => $tok };
}

my @verified = pyjwt(@jobs);
for my $i (0 .. $#algs) {
    is_deeply($verified[$i]{claims}, \%claims,
              "jwt_tool's $algs[$i] token verifies with PyJWT")
        or diag($verified[$i]{error} // 'no error');
}

# --- the alg-confusion attack --------------------------------------------
my ($pem_refused, $confused) = pyjwt(
    { op => 'sign', alg => 'HS256', key => "$dir/rsa.pub",
      claims => $claims_text },
    { op => 'hmac', key => "$dir/rsa.pub", claims => $claims_text,
      header => { alg => 'HS256', typ => 'JWT' } },
);
like($pem_refused->{error} // '', qr/InvalidKeyError/,
     'PyJWT itself will not use a PEM public key as an HMAC secret');

my ($rc, $out, $err) = tool('verify', 'RS256', "$dir/rsa.pub",
                            $confused->{token});
is($rc, 1, 'HS256 token MAC\'d with the RSA public PEM: refused');
like($err, qr/\Qtoken alg does not match the key's alg\E/, '... as an alg mismatch');
is($out, '', '... and no claims printed');

# the same secret as an HMAC key cannot even be configured
($rc, $out, $err) = tool('verify', 'HS256', "$dir/rsa.pub", $confused->{token});
is($rc, 2, 'the RSA public PEM as an HS256 secret: refused at load');
like($err, qr/PEM/, '... saying it is a PEM block');

# --- a few refusals of PyJWT-made tokens ---------------------------------
my ($expired, $none, $with_kid) = pyjwt(
    { op => 'sign', alg => 'HS256', key => "$dir/hs.key",
      claims => JSON::PP->new->encode({ %claims, exp => $now - 10 }) },
    { op => 'sign', alg => 'none', claims => $claims_text },
    { op => 'sign', alg => 'ES256', key => "$dir/ec256.pem",
      claims => $claims_text, headers => { kid => 'k1' } },
);

($rc, $out, $err) = tool('verify', 'HS256', "$dir/hs.key", $expired->{token});
like($err, qr/token expired/, 'expired PyJWT token refused as expired');
is($rc, 1, '... exit 1');

($rc, $out, $err) = tool('verify', 'HS256', "$dir/hs.key", $none->{token});
like($err, qr/alg none/, 'PyJWT alg none token refused as alg none');

($rc, $out, $err) = tool('verify', 'ES256', "$dir/ec256.pub", $with_kid->{token});
like($err, qr/unknown key id/, 'kid the key set does not have: unknown kid');

($rc, $out, $err) = tool('verify', 'ES256', "$dir/ec256.pub", $minted{RS256}{token});
like($err, qr/alg does not match/, 'RS256 token against an ES256 key: alg mismatch');

my ($h, undef, $s) = split /\./, $minted{ES256}{token};
my $forged = encode_base64url($json->encode({ %claims, role => 'owner' }));
($rc, $out, $err) = tool('verify', 'ES256', "$dir/ec256.pub", "$h.$forged.$s");
like($err, qr/bad signature/, 'ES256 token with a changed payload: bad signature');

done_testing();
