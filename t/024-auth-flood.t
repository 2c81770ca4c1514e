# A login flood does not stall other requests on the same nginx worker:
# password hashing runs on the thread pool, not the event loop.
use strict;
use warnings;
use FindBin;
use IO::Socket::IP;
use JSON::PP;
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $conf = "$FindBin::Bin/../conf/crest-api.conf";
my $t = Crest::Test->new(
    workers     => 1,
    # one hashing thread: the flood queues up behind it for a while
    main_config => 'thread_pool crest_hash threads=1 max_queue=256;',
    http_config => 'crest_auth_jwt_secret_file $TEST_NGINX_JWT_SECRET_FILE;',
    config      => "include $conf;",
);
$t->start;

is($t->http(POST => '/api/auth/register',
            json => { email => 'flood@example.com', password => 'password1' })->{status},
   201, 'registered');

my $logins = 24;
my @socks;
my $start = time;
for my $i (1 .. $logins) {
    my $body = encode_json({ email => 'flood@example.com',
                             password => $i % 2 ? 'password1' : 'wrong-password' });
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $t->port, Timeout => 5)
        or die "connect: $!";
    print $s "POST /api/auth/login HTTP/1.0\r\nHost: localhost\r\n"
           . "Content-Type: application/json\r\nContent-Length: " . length($body)
           . "\r\n\r\n$body";
    push @socks, $s;
}

# meanwhile, on the same (only) worker
my @live;
for (1 .. 10) {
    push @live, $t->http(GET => '/api/health/live');
}
my $live_done = time;

is(scalar(grep { $_->{status} == 200 } @live), 10, 'live requests answered during the flood');
my ($worst) = sort { $b <=> $a } map { $_->{elapsed} } @live;
cmp_ok($worst, '<', 0.1, 'each well under 100 ms: hashing is off the event loop');

my ($ok, $denied, $other) = (0, 0, 0);
for my $s (@socks) {
    local $/;
    my $resp = <$s> // '';
    close $s;
    if ($resp =~ m{^HTTP/1\.\d 200 }) { $ok++ }
    elsif ($resp =~ m{^HTTP/1\.\d 401 }) { $denied++ }
    else { $other++; diag(substr($resp, 0, 200)) }
}
my $flood_done = time;

is($ok, $logins / 2, 'every right password signed in');
is($denied, $logins / 2, 'every wrong one was refused');
is($other, 0, 'nothing else');
cmp_ok($flood_done, '>', $live_done, 'the flood was still being hashed while live answered');

$t->stop;
done_testing;
