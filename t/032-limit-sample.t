# The sample configuration applies the seeds' limits: 100 a minute per
# address and per user, 10 sign-ins a minute per address and 10 an hour
# per account; health checks are never limited.
use strict;
use warnings;
use FindBin;
use Test::More;
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $confdir = "$FindBin::Bin/../conf";
my $t = Crest::Test->new(
    workers     => 1,
    http_config => "include $confdir/crest-limits.conf;",
    config      => qq{
        # each test request may claim its own address
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        include $confdir/crest-limits-apply.conf;
        include $confdir/crest-api.conf;
    },
);
$t->start;

sub from { return { 'X-Forwarded-For' => $_[0] } }

my @st = map { $t->http(GET => '/api/health/live', headers => from('10.0.0.1'))->{status} } 1 .. 150;
is(scalar(grep { $_ == 200 } @st), 150, 'health checks are never limited');

@st = map { $t->http(GET => '/api/no/such', headers => from('10.0.0.2'))->{status} } 1 .. 101;
is(scalar(grep { $_ == 404 } @st), 100, 'an address gets 100 requests a minute');
is($st[-1], 429, 'the 101st is refused');
is($t->http(GET => '/api/no/such', headers => from('10.0.0.3'))->{status}, 404,
   'another address is not');

# per user: the same account from many addresses
my $r = $t->http(POST => '/api/auth/register', headers => from('10.1.0.1'),
                 json => { email => 'u@example.com', password => 'password1' });
is($r->{status}, 201, 'registered');
my $auth = { Authorization => "Bearer $r->{json}{data}{accessToken}" };
@st = map { $t->http(GET => '/api/auth/user', headers => { %$auth, %{ from("10.2.0.$_") } })->{status} }
      1 .. 101;
is(scalar(grep { $_ == 200 } @st), 100, 'a user gets 100 requests a minute, whatever the address');
is($st[-1], 429, 'the 101st is refused');

# sign-ins per address
@st = map { $t->http(POST => '/api/auth/login', headers => from('10.3.0.1'),
                     json => { email => "nobody$_\@example.com", password => 'password1' })->{status} }
      1 .. 11;
is(scalar(grep { $_ == 401 } @st), 10, 'ten sign-ins a minute per address');
is($st[-1], 429, 'the 11th is refused');

# sign-ins per account, from many addresses: a password guesser
@st = map { $t->http(POST => '/api/auth/login', headers => from("10.4.0.$_"),
                     json => { email => 'u@example.com', password => "guess$_" })->{status} }
      1 .. 11;
is(scalar(grep { $_ == 401 } @st), 10, 'ten sign-ins an hour per account');
is($st[-1], 429, 'the 11th is refused, whatever the address');
$r = $t->http(POST => '/api/auth/login', headers => from('10.4.1.1'),
              json => { email => 'U@Example.com', password => 'password1' });
is($r->{status}, 429, 'even with the right password, in any case of the email');
is($r->{json}{error}{code}, 'RATE_LIMITED', 'RATE_LIMITED');
ok($r->{headers}{'retry-after'}, 'with Retry-After');

$t->stop;
done_testing;
