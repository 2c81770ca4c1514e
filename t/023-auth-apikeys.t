# API keys: created once, listed without secrets, authenticate as their
# owner, other users' keys are 404, and a revoked key stops working within
# the cache lifetime on every worker.
use strict;
use warnings;
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA ();
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 2,
    main_config => 'thread_pool crest_hash threads=2;',
    http_config => 'crest_auth_jwt_secret_file $TEST_NGINX_JWT_SECRET_FILE;
                    crest_auth_key_cache 1s;',
    config      => qq{
        include $conf;
        location = /who {
            crest_auth on;
            add_header X-User \$crest_user_id;
            add_header X-Method \$crest_auth_method;
            crest_health live;
        }
    },
);
$t->start;

sub session {
    my ($email) = @_;
    my $r = $t->http(POST => '/api/auth/register', json => { email => $email, password => 'password1' });
    die "register $email: $r->{status}" unless $r->{status} == 201;
    return $r->{json}{data};
}

sub as { return { Authorization => "Bearer $_[0]" } }

my $alice = session('alice@example.com');
my $bob = session('bob@example.com');

my $r = $t->http(POST => '/api/keys', json => { name => 'laptop' }, headers => as($alice->{accessToken}));
is($r->{status}, 201, 'create a key: 201');
my $key = $r->{json}{data};
like($key->{key}, qr/^crest_[A-Za-z0-9_-]{43}$/, 'the key, shown once');
is($key->{name}, 'laptop', 'named');
is($key->{prefix}, substr($key->{key}, 6, 8), 'its prefix');
is($key->{lastUsedAt}, undef, 'never used yet');
is($t->psql("SELECT count(*) FROM api_keys WHERE encode(key_hash, 'hex') = '"
            . Digest::SHA::sha256_hex($key->{key}) . "'"), 1, 'stored as its SHA-256');

for my $bad ({}, { name => '' }, { name => 'x' x 101 }, { name => 5 }, { name => "a\nb" }) {
    $r = $t->http(POST => '/api/keys', json => $bad, headers => as($alice->{accessToken}));
    is($r->{status}, 400, 'bad name: 400');
}
is($t->http(POST => '/api/keys', json => { name => 'x' })->{status}, 401, 'no token: 401');

# --- authenticate with it, both ways
$r = $t->http(GET => '/who', headers => { 'X-API-Key' => $key->{key} });
is($r->{status}, 200, 'X-API-Key authenticates');
is($r->{headers}{'x-user'}, $alice->{user}{id}, 'as its owner');
is($r->{headers}{'x-method'}, 'api_key', '$crest_auth_method is api_key');
$r = $t->http(GET => '/who', headers => as($key->{key}));
is($r->{status}, 200, 'as a Bearer token too');
$r = $t->http(GET => '/api/auth/user', headers => { 'X-API-Key' => $key->{key} });
is($r->{json}{data}{email}, 'alice@example.com', 'endpoints see the owner');
isnt($t->psql("SELECT last_used_at FROM api_keys WHERE id = '$key->{id}'"), '', 'last use recorded');

$r = $t->http(GET => '/who', headers => { 'X-API-Key' => 'crest_' . ('A' x 43) });
is($r->{status}, 401, 'an unknown key: 401');
is($r->{json}{error}{message}, 'invalid API key', 'says so');

# --- list: the owner's keys, never a secret
$t->http(POST => '/api/keys', json => { name => 'ci' }, headers => as($alice->{accessToken}));
$t->http(POST => '/api/keys', json => { name => 'bob-key' }, headers => as($bob->{accessToken}));
$r = $t->http(GET => '/api/keys', headers => as($alice->{accessToken}));
is($r->{status}, 200, 'list: 200');
is_deeply([ sort map { $_->{name} } @{ $r->{json}{data}{keys} } ], [ 'ci', 'laptop' ],
          "alice sees her two keys, not bob's");
ok(!grep({ exists $_->{key} } @{ $r->{json}{data}{keys} }), 'no secret in the list');
unlike($r->{content}, qr/\Q$key->{key}\E/, 'not anywhere in the answer');

# --- another user's key is 404, and stays valid
$r = $t->http(DELETE => "/api/keys/$key->{id}", headers => as($bob->{accessToken}));
is($r->{status}, 404, "bob cannot revoke alice's key: 404");
is($t->http(GET => '/who', headers => { 'X-API-Key' => $key->{key} })->{status}, 200,
   'which still works');
is($t->http(DELETE => '/api/keys/not-a-uuid', headers => as($alice->{accessToken}))->{status},
   404, 'a malformed id: 404');
is($t->http(DELETE => '/api/keys/00000000-0000-0000-0000-000000000000',
            headers => as($alice->{accessToken}))->{status}, 404, 'an unknown id: 404');
is($t->http(GET => "/api/keys/$key->{id}", headers => as($alice->{accessToken}))->{status},
   405, 'GET on one key: 405');

# --- revoke: it stops working on every worker within the cache lifetime
# (warm both workers' caches first: several requests spread over them)
$t->http(GET => '/who', headers => { 'X-API-Key' => $key->{key} }) for 1 .. 6;
$r = $t->http(DELETE => "/api/keys/$key->{id}", headers => as($alice->{accessToken}));
is($r->{status}, 200, 'revoke: 200');
ok($r->{json}{data}{revoked}, 'revoked');

my $end = time + 3;
my $refused = 0;
while (time < $end) {
    # consecutive refusals across fresh connections, which land on both workers
    my $st = $t->http(GET => '/who', headers => { 'X-API-Key' => $key->{key} })->{status};
    $refused = $st == 401 ? $refused + 1 : 0;
    last if $refused >= 10;
    sleep 0.05;
}
cmp_ok($refused, '>=', 10, 'the revoked key is refused everywhere within seconds');
is($t->http(DELETE => "/api/keys/$key->{id}", headers => as($alice->{accessToken}))->{status},
   404, 'revoking again: 404');

$t->stop;
done_testing;
