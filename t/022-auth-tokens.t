# Token verification at the edge: tokens from a standard library (PyJWT)
# verify, Crest's tokens verify with it, and every attack is a 401.
use strict;
use warnings;
use FindBin;
use File::Temp qw(tempdir);
use MIME::Base64 qw(encode_base64url);
use Test::More;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::JWT qw(hs256 raw_token decode_part pyjwt_encode pyjwt_decode python_ok);

plan skip_all => 'Debian python3-jwt is needed' unless python_ok();

my $keys = tempdir(CLEANUP => 1);
sub openssl { system('openssl', @_, '-out', pop @_) == 0 or die "openssl @_ failed" }
system("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $keys/rsa.pem 2>/dev/null") == 0
    or die 'rsa keygen';
system("openssl pkey -in $keys/rsa.pem -pubout -out $keys/rsa.pub") == 0 or die;
system("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $keys/ec.pem 2>/dev/null") == 0
    or die 'ec keygen';
system("openssl pkey -in $keys/ec.pem -pubout -out $keys/ec.pub") == 0 or die;
system("openssl genpkey -algorithm ed25519 -out $keys/ed.pem") == 0 or die 'ed25519 keygen';
system("openssl pkey -in $keys/ed.pem -pubout -out $keys/ed.pub") == 0 or die;

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $iss = 'https://crest.test';
my $aud = 'crest-api';

my $t = Crest::Test->new(
    workers     => 1,
    main_config => 'thread_pool crest_hash threads=2;',
    http_config => qq{
        crest_auth_jwt_secret_file \$TEST_NGINX_JWT_SECRET_FILE kid=hs1;
        crest_auth_jwt_key $keys/rsa.pub alg=RS256 kid=rsa1;
        crest_auth_jwt_key $keys/ec.pub kid=ec1;
        crest_auth_jwt_key $keys/ed.pub kid=ed1;
        crest_auth_issuer $iss;
        crest_auth_audience $aud;
        crest_auth_leeway 30s;
        crest_auth_cookie crest_session;
    },
    config => qq{
        # room for a token over the verifier's 8 KiB limit to reach it
        large_client_header_buffers 4 32k;
        include $conf;
        location = /who {
            crest_auth on;
            add_header X-User \$crest_user_id;
            add_header X-Role \$crest_user_role;
            add_header X-Plan \$crest_user_plan;
            add_header X-Jti \$crest_claim_jti;
            add_header X-Method \$crest_auth_method;
            crest_health live;
        }
        location = /admin {
            crest_auth on;
            crest_auth_role admin;
            crest_health live;
        }
        location = /maybe {
            crest_auth optional;
            add_header X-User \$crest_user_id;
            crest_health live;
        }
    },
);
$t->start;

(my $secret = do { local (@ARGV, $/) = $t->jwt_secret_file; <> }) =~ s/[\r\n]+\z//;
my $uid = '5b1f3c9e-8a47-4f7e-9d2c-0e6a1b2c3d4e';
my $now = time;
my %good = (sub => $uid, role => 'user', plan => 'pro', iss => $iss, aud => $aud,
            iat => $now, exp => $now + 600, jti => 'abc123');

sub who {
    my ($token, $path) = @_;
    return $t->http(GET => $path || '/who',
                    headers => defined $token ? { Authorization => "Bearer $token" } : {});
}

sub refused {
    my ($token, $name, $path) = @_;
    my $r = who($token, $path);
    is($r->{status}, 401, "$name: 401");
    is($r->{json}{error}{code}, 'UNAUTHORIZED', "$name: UNAUTHORIZED");
    like($r->{headers}{'www-authenticate'} // '', qr/^Bearer realm="crest"/, "$name: WWW-Authenticate");
    return $r;
}

# --- standard library tokens verify at the edge
my $r = who(hs256($secret, \%good, { alg => 'HS256', typ => 'JWT', kid => 'hs1' }));
is($r->{status}, 200, 'HS256 token (Perl HMAC) accepted');
is($r->{headers}{'x-user'}, $uid, '$crest_user_id');
is($r->{headers}{'x-role'}, 'user', '$crest_user_role');
is($r->{headers}{'x-plan'}, 'pro', '$crest_user_plan');
is($r->{headers}{'x-jti'}, 'abc123', '$crest_claim_jti');
is($r->{headers}{'x-method'}, 'jwt', '$crest_auth_method');

for my $k ([HS256 => $secret, 'hs1'], [RS256 => "$keys/rsa.pem", 'rsa1'],
           [ES256 => "$keys/ec.pem", 'ec1'], [EdDSA => "$keys/ed.pem", 'ed1']) {
    my ($alg, $key, $kid) = @$k;
    my $tok = pyjwt_encode($alg, $key, \%good, { kid => $kid });
    is(who($tok)->{status}, 200, "PyJWT $alg token accepted");
}

# --- Crest's tokens verify with PyJWT
$r = $t->http(POST => '/api/auth/register', json => { email => 'eve@example.com', password => 'password1' });
is($r->{status}, 201, 'registered');
my $issued = $r->{json}{data}{accessToken};
is(decode_part($issued, 0)->{kid}, 'hs1', 'Crest signs with the first signing key, naming its kid');
my $decoded = pyjwt_decode('HS256', $secret, $issued, audience => $aud, issuer => $iss);
is($decoded->{sub}, $r->{json}{data}{user}{id}, 'PyJWT verifies the token Crest issued');
is($decoded->{iss}, $iss, 'with the configured issuer');
is(who($issued)->{status}, 200, 'and the edge accepts it');

# --- attacks, one each
refused(raw_token({ alg => 'none', typ => 'JWT', kid => 'hs1' }, \%good, ''), 'alg none');
refused(raw_token({ alg => 'None', kid => 'hs1' }, \%good, ''), 'alg None');

my $pub = do { local (@ARGV, $/) = "$keys/rsa.pub"; <> };
my $confused = hs256($pub, \%good, { alg => 'HS256', typ => 'JWT', kid => 'rsa1' });
$r = refused($confused, 'HS256 signed with the RSA public key PEM');
like($r->{headers}{'www-authenticate'}, qr/error="invalid_token"/, 'names invalid_token');

refused(hs256($secret, \%good, { alg => 'HS256', kid => 'nope' }), 'unknown kid');
refused(hs256($secret, \%good, { alg => 'HS256' }), 'no kid with several keys');

my $tok = hs256($secret, \%good, { alg => 'HS256', kid => 'hs1' });
my @p = split /\./, $tok;
substr($p[2], 5, 1) = substr($p[2], 5, 1) eq 'A' ? 'B' : 'A';
refused(join('.', @p), 'bad signature');
refused(hs256('wrong secret of enough length for hs256 keys!!', \%good,
              { alg => 'HS256', kid => 'hs1' }), 'signed with another secret');

refused('abc', 'malformed: one part');
refused('a.b', 'malformed: two parts');
refused("$tok.x", 'malformed: four parts');
refused('!!!.###.$$$', 'malformed: not base64url');
refused(raw_token('not json', \%good, 'x'), 'malformed: header not JSON');
refused(hs256($secret, { %good, junk => 'x' x 10000 }, { alg => 'HS256', kid => 'hs1' }),
        'oversized token');

refused(hs256($secret, { %good, exp => $now - 3600 }, { alg => 'HS256', kid => 'hs1' }), 'expired');
refused(hs256($secret, { %good, nbf => $now + 3600 }, { alg => 'HS256', kid => 'hs1' }), 'not yet valid');
is(who(hs256($secret, { %good, exp => $now - 10 }, { alg => 'HS256', kid => 'hs1' }))->{status},
   200, 'expired 10 s ago: within the 30 s leeway');
is(who(hs256($secret, { %good, nbf => $now + 10 }, { alg => 'HS256', kid => 'hs1' }))->{status},
   200, 'valid in 10 s: within the 30 s leeway');
refused(hs256($secret, { %good, exp => 'tomorrow' }, { alg => 'HS256', kid => 'hs1' }), 'exp not a number');
my %noexp = %good; delete $noexp{exp};
refused(hs256($secret, \%noexp, { alg => 'HS256', kid => 'hs1' }), 'no exp');

refused(hs256($secret, { %good, iss => 'https://evil.test' }, { alg => 'HS256', kid => 'hs1' }), 'wrong iss');
my %noiss = %good; delete $noiss{iss};
refused(hs256($secret, \%noiss, { alg => 'HS256', kid => 'hs1' }), 'no iss');
refused(hs256($secret, { %good, aud => 'other' }, { alg => 'HS256', kid => 'hs1' }), 'wrong aud');
is(who(hs256($secret, { %good, aud => ['other', $aud] }, { alg => 'HS256', kid => 'hs1' }))->{status},
   200, 'aud as an array containing ours');
refused(hs256($secret, { %good, sub => 'not-a-uuid' }, { alg => 'HS256', kid => 'hs1' }),
        'subject that is not a user id');

$r = $t->http(GET => '/who', headers => { Authorization => "Basic dXNlcjpwYXNz" });
is($r->{status}, 401, 'Basic auth: 401');
$r = who(undef);
is($r->{status}, 401, 'no credentials: 401');
is($r->{headers}{'www-authenticate'}, 'Bearer realm="crest"', 'without an error attribute');

# --- roles
is(who(hs256($secret, \%good, { alg => 'HS256', kid => 'hs1' }), '/admin')->{status},
   403, 'user on an admin location: 403');
is(who(hs256($secret, \%good, { alg => 'HS256', kid => 'hs1' }), '/admin')->{json}{error}{code},
   'FORBIDDEN', 'FORBIDDEN');
is(who(hs256($secret, { %good, role => 'admin' }, { alg => 'HS256', kid => 'hs1' }), '/admin')->{status},
   200, 'admin on an admin location: 200');

# --- optional, cookies, preflight
$r = $t->http(GET => '/maybe');
is($r->{status}, 200, 'optional without credentials passes');
ok(!$r->{headers}{'x-user'}, 'anonymous');
is(who(hs256($secret, \%good, { alg => 'HS256', kid => 'hs1' }), '/maybe')->{headers}{'x-user'},
   $uid, 'optional with a token identifies');
is(who('garbage', '/maybe')->{status}, 401, 'optional with a bad token: 401');

$r = $t->http(POST => '/api/auth/login', json => { email => 'eve@example.com', password => 'password1' });
my ($cookie) = ($r->{headers}{'set-cookie'} // '') =~ /^(crest_session=[^;]+)/;
ok($cookie, 'login sets the session cookie');
like($r->{headers}{'set-cookie'}, qr/HttpOnly/, 'HttpOnly');
like($r->{headers}{'set-cookie'}, qr/SameSite=Lax/, 'SameSite=Lax');
is($t->http(GET => '/who', headers => { Cookie => "theme=dark; $cookie" })->{status},
   200, 'the cookie authenticates the dashboard');

$r = $t->http(OPTIONS => '/who', headers => { Origin => 'https://app.example.com',
                                            'Access-Control-Request-Method' => 'GET' });
isnt($r->{status}, 401, 'CORS preflight is not asked for a token');

$t->stop;
done_testing;
