# Accounts and sessions: register, login, profile, refresh rotation with
# reuse detection, logout, and account deletion.
use strict;
use warnings;
use FindBin;
use Test::More;
use lib "$FindBin::Bin/lib";
use Crest::Test;
use Crest::JWT qw(decode_part);

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 1,
    main_config => 'thread_pool crest_hash threads=2;',
    http_config => 'crest_auth_jwt_secret_file $TEST_NGINX_JWT_SECRET_FILE;',
    config      => "include $conf;",
);
$t->start;

sub post {
    my ($path, $body, %h) = @_;
    return $t->http(POST => $path, json => $body, %h);
}

sub bearer { return { Authorization => "Bearer $_[0]" } }

# --- register
my $r = post('/api/auth/register',
             { email => '  Alice@Example.COM ', password => 'correct horse', name => 'Alice' });
is($r->{status}, 201, 'register: 201');
my $d = $r->{json}{data};
is($d->{user}{email}, 'alice@example.com', 'email normalised to lower case');
is($d->{user}{name}, 'Alice', 'name kept');
is($d->{user}{role}, 'user', 'role user');
is($d->{user}{plan}, 'free', 'plan free');
like($d->{user}{id}, qr/^[0-9a-f-]{36}$/, 'user id is a uuid');
like($d->{user}{createdAt}, qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/, 'createdAt ISO-8601');
is($d->{tokenType}, 'Bearer', 'token type');
is($d->{expiresIn}, 3600, 'access token lasts an hour by default');
is($d->{refreshExpiresIn}, 86400, 'refresh token lasts a day by default');
like($d->{refreshToken}, qr/^[A-Za-z0-9_-]{43}$/, 'refresh token is opaque');
my $claims = decode_part($d->{accessToken}, 1);
is($claims->{sub}, $d->{user}{id}, 'access token subject is the user');
is($claims->{exp} - $claims->{iat}, 3600, 'exp is iat + 1h');
my $alice = $d;

my $row = $t->psql("SELECT password_hash FROM users WHERE email = 'alice\@example.com'");
like($row, qr/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/, 'password stored as argon2id');
unlike($row, qr/correct horse/, 'never in clear');
is($t->psql("SELECT count(*) FROM refresh_tokens WHERE user_id = '$alice->{user}{id}'"),
   1, 'one refresh token stored');
unlike($t->psql('SELECT encode(token_hash, \'escape\') FROM refresh_tokens'),
       qr/\Q$alice->{refreshToken}\E/, 'only its hash is stored');

$r = post('/api/auth/register', { email => 'ALICE@example.com', password => 'another one' });
is($r->{status}, 409, 'duplicate email (any case): 409');
is($r->{json}{error}{code}, 'CONFLICT', 'CONFLICT');

for my $case (
    [ { password => 'longenough' },                         'email',    'missing email' ],
    [ { email => 'not-an-email', password => 'longenough' }, 'email',    'bad email' ],
    [ { email => 42, password => 'longenough' },             'email',    'email not a string' ],
    [ { email => 'b@example.com', password => 'short' },      'password', 'password too short' ],
    [ { email => 'b@example.com', password => 'x' x 1025 },   'password', 'password too long' ],
    [ { email => 'b@example.com' },                          'password', 'missing password' ],
    [ { email => 'b@example.com', password => 'longenough', name => [] }, 'name', 'name not a string' ],
    [ { email => 'b@example.com', password => 'longenough', name => 'x' x 101 }, 'name', 'name too long' ],
) {
    my ($body, $field, $name) = @$case;
    $r = post('/api/auth/register', $body);
    is($r->{status}, 400, "$name: 400");
    is($r->{json}{error}{code}, 'VALIDATION_ERROR', "$name: VALIDATION_ERROR");
    ok(exists $r->{json}{error}{details}{fields}{$field}, "$name: names the field $field");
}
is(post('/api/auth/register', { email => 'b@example.com', password => 'x' x 1024 })->{status},
   201, 'a 1024-byte password is accepted');
is(post('/api/auth/register', { email => 'c@example.com', password => '12345678' })->{status},
   201, 'an 8-byte password is accepted, name optional');

# --- login
$r = post('/api/auth/login', { email => 'alice@EXAMPLE.com', password => 'correct horse' });
is($r->{status}, 200, 'login: 200');
ok($r->{json}{data}{accessToken} && $r->{json}{data}{refreshToken}, 'login returns both tokens');
is($r->{json}{data}{user}{id}, $alice->{user}{id}, 'the same user');

my $wrong = post('/api/auth/login', { email => 'alice@example.com', password => 'wrong horse' });
my $unknown = post('/api/auth/login', { email => 'nobody@example.com', password => 'wrong horse' });
is($wrong->{status}, 401, 'wrong password: 401');
is($unknown->{status}, 401, 'unknown email: 401');
is($wrong->{json}{error}{message}, $unknown->{json}{error}{message},
   'the same message for both');
is($wrong->{json}{error}{code}, 'UNAUTHORIZED', 'UNAUTHORIZED');
# Unknown emails are checked against a dummy argon2id hash, so both cost a
# hash; timing is not asserted here (see the closing note), only the path.

# --- profile
$r = $t->http(GET => '/api/auth/user', headers => bearer($alice->{accessToken}));
is($r->{status}, 200, 'profile with a token');
is_deeply([ @{ $r->{json}{data} }{qw(id email role plan)} ],
          [ $alice->{user}{id}, 'alice@example.com', 'user', 'free' ], 'profile fields');
$r = $t->http(GET => '/api/auth/user');
is($r->{status}, 401, 'profile without a token: 401');
like($r->{headers}{'www-authenticate'}, qr/^Bearer realm="crest"/, 'WWW-Authenticate');

# --- refresh rotation
$r = post('/api/auth/refresh', { refreshToken => $alice->{refreshToken} });
is($r->{status}, 200, 'refresh: 200');
my $second = $r->{json}{data}{refreshToken};
isnt($second, $alice->{refreshToken}, 'a new refresh token');
is($r->{json}{data}{user}{id}, $alice->{user}{id}, 'for the same user');

$r = post('/api/auth/refresh', { refreshToken => $second });
is($r->{status}, 200, 'the new one works');
my $third = $r->{json}{data}{refreshToken};

$r = post('/api/auth/refresh', { refreshToken => $alice->{refreshToken} });
is($r->{status}, 401, 'the spent one is refused');
$r = post('/api/auth/refresh', { refreshToken => $third });
is($r->{status}, 401, 'and reusing it revoked the whole family: the latest fails too');
is($t->psql("SELECT count(*) FROM refresh_tokens WHERE user_id = '$alice->{user}{id}' "
            . "AND revoked_at IS NULL AND used_at IS NULL"), 1,
   'only the family from the separate login is still live');
like($t->error_log, qr/spent refresh token was presented again/, 'theft is logged');

$r = post('/api/auth/refresh', { refreshToken => 'x' x 43 });
is($r->{status}, 401, 'an unknown refresh token: 401');
$r = post('/api/auth/refresh', {});
is($r->{status}, 400, 'no refresh token: 400');

# --- logout
$r = post('/api/auth/login', { email => 'alice@example.com', password => 'correct horse' });
my $session = $r->{json}{data};
$r = post('/api/auth/logout', { refreshToken => $session->{refreshToken} });
is($r->{status}, 200, 'logout: 200');
ok($r->{json}{data}{loggedOut}, 'logged out');
$r = post('/api/auth/refresh', { refreshToken => $session->{refreshToken} });
is($r->{status}, 401, 'the logged-out refresh token is refused');

# --- account deletion
$r = post('/api/auth/login', { email => 'b@example.com', password => 'x' x 1024 });
my $bob = $r->{json}{data};
my $bid = $bob->{user}{id};
$r = $t->http(POST => '/api/keys', json => { name => 'ci' }, headers => bearer($bob->{accessToken}));
is($r->{status}, 201, 'bob has an API key');
is($t->psql("SELECT count(*) FROM refresh_tokens WHERE user_id = '$bid'"), 2, 'and two sessions (register, login)');

$r = $t->http(DELETE => '/api/auth/user', headers => bearer($bob->{accessToken}));
is($r->{status}, 200, 'delete account: 200');
ok($r->{json}{data}{deleted}, 'deleted');
is($t->psql("SELECT count(*) FROM users WHERE id = '$bid'"), 0, 'user row gone');
is($t->psql("SELECT count(*) FROM refresh_tokens WHERE user_id = '$bid'"), 0, 'sessions gone');
is($t->psql("SELECT count(*) FROM api_keys WHERE user_id = '$bid'"), 0, 'API keys gone');
$r = post('/api/auth/refresh', { refreshToken => $bob->{refreshToken} });
is($r->{status}, 401, 'its refresh token no longer works');
$r = $t->http(GET => '/api/auth/user', headers => bearer($bob->{accessToken}));
is($r->{status}, 404, 'its still-unexpired access token finds no account');

# --- methods and bodies
is($t->http(GET => '/api/auth/login')->{status}, 405, 'GET login: 405');
is($t->http(POST => '/api/auth/login', body => 'email=a', headers => {
    'Content-Type' => 'application/x-www-form-urlencoded' })->{status}, 415, 'form body: 415');

$t->stop;
done_testing;
