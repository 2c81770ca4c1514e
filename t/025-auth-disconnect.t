# Clients that leave while their password is being hashed on the thread
# pool, or while their API key is being looked up, leave no crash, error or
# (under make test-asan) memory error behind.
use strict;
use warnings;
use FindBin;
use IO::Socket::IP;
use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 1,
    main_config => 'thread_pool crest_hash threads=1;',
    http_config => 'crest_auth_jwt_secret_file $TEST_NGINX_JWT_SECRET_FILE;
                    crest_pg_query_timeout 10s;',
    config      => "include $conf;",
);
$t->start;

my @before = $t->nginx_pids;

sub send_raw {
    my ($req) = @_;
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $t->port, Timeout => 5)
        or die "connect: $!";
    print $s $req;
    return $s;
}

sub post_raw {
    my ($path, $body) = @_;
    my $json = encode_json($body);
    return send_raw("POST $path HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    . "Content-Length: " . length($json) . "\r\n\r\n$json");
}

my $r = $t->http(POST => '/api/auth/register', json => { email => 'x@example.com', password => 'password1' });
is($r->{status}, 201, 'registered');
my $token = $r->{json}{data}{accessToken};
$r = $t->http(POST => '/api/keys', json => { name => 'k' }, headers => { Authorization => "Bearer $token" });
my $key = $r->{json}{data}{key};
ok($key, 'has a key');

# leave while hashes are queued and running on the single thread
my @s = map { post_raw('/api/auth/login', { email => 'x@example.com', password => 'password1' }) } 1 .. 8;
sleep 0.05;
close $_ for @s;
@s = map { post_raw('/api/auth/register', { email => "r$_\@example.com", password => 'password1' }) } 1 .. 4;
sleep 0.05;
close $_ for @s;
sleep 1;    # let the thread finish what was queued

# leave while the API key lookup waits on a frozen database
$t->pg_pause;
@s = map { send_raw("GET /api/auth/user HTTP/1.1\r\nHost: localhost\r\nX-API-Key: $key\r\n\r\n") } 1 .. 4;
sleep 0.3;
close $_ for @s;
sleep 0.2;
$t->pg_resume;
sleep 0.5;

$r = $t->http(GET => '/api/auth/user', headers => { 'X-API-Key' => $key });
is($r->{status}, 200, 'the worker serves the key afterwards');
$r = $t->http(POST => '/api/auth/login', json => { email => 'x@example.com', password => 'password1' });
is($r->{status}, 200, 'and logins');
is_deeply([ $t->nginx_pids ], \@before, 'the worker did not crash');
unlike($t->error_log, qr/exited on signal|\[alert\]/, 'no crash or alert in the log');

$t->stop;
done_testing;
