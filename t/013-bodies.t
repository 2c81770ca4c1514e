# Bad bodies and nginx's own errors answer in the envelope with the right
# status, never a 500 or an HTML page.
use strict;
use warnings;
use FindBin;
use Test::More;
use lib "$FindBin::Bin/lib";
use Crest::Test;

my $confdir = "$FindBin::Bin/../conf";
my $conf = "$confdir/crest-api.conf";
my $t = Crest::Test->new(workers => 1, config => qq{
    include $conf;
    location = /api/echo {
        include $confdir/crest-errors.conf;
        crest_echo;
    }
});
$t->start;

my %json = ('Content-Type' => 'application/json');

sub check {
    my ($name, $r, $status, $code) = @_;
    is($r->{status}, $status, "$name: status $status");
    is($r->{headers}{'content-type'}, 'application/json; charset=utf-8', "$name: JSON");
    ok($r->{json} && !$r->{json}{success}, "$name: success false");
    is($r->{json}{error}{code}, $code, "$name: $code");
    ok(length($r->{json}{error}{message} // ''), "$name: has a message");
}

my $r = $t->http(POST => '/api/echo', headers => \%json, body => '{"a":[1,"two",{"b":null}]}');
is($r->{status}, 200, 'valid body is echoed');
is_deeply($r->{json}{data}, { a => [1, 'two', { b => undef }] }, 'echo returns the body');

$r = $t->http(POST => '/api/echo', headers => \%json, body => '{"a":');
check('truncated JSON', $r, 400, 'VALIDATION_ERROR');
is($r->{json}{error}{details}{line}, 1, 'details name the line');
ok(defined $r->{json}{error}{details}{position}, 'and the position');

check('not JSON at all',
      $t->http(POST => '/api/echo', headers => \%json, body => 'hello'), 400, 'VALIDATION_ERROR');
check('duplicate keys',
      $t->http(POST => '/api/echo', headers => \%json, body => '{"a":1,"a":2}'), 400, 'VALIDATION_ERROR');
check('invalid UTF-8',
      $t->http(POST => '/api/echo', headers => \%json, body => "{\"a\":\"\xff\xfe\"}"), 400, 'VALIDATION_ERROR');
check('trailing garbage',
      $t->http(POST => '/api/echo', headers => \%json, body => '{} {}'), 400, 'VALIDATION_ERROR');
check('empty body',
      $t->http(POST => '/api/echo', headers => \%json, body => ''), 400, 'VALIDATION_ERROR');

check('text/plain', $t->http(POST => '/api/echo', headers => { 'Content-Type' => 'text/plain' },
                             body => '{}'), 415, 'VALIDATION_ERROR');
check('no content type', $t->http(POST => '/api/echo', body => '{}'), 415, 'VALIDATION_ERROR');
check('latin-1 charset',
      $t->http(POST => '/api/echo',
               headers => { 'Content-Type' => 'application/json; charset=latin1' }, body => '{}'),
      415, 'VALIDATION_ERROR');
is($t->http(POST => '/api/echo', headers => { 'Content-Type' => 'application/json; charset=UTF-8' },
            body => '{}')->{status}, 200, 'charset=UTF-8 is fine');
is($t->http(POST => '/api/echo', headers => { 'Content-Type' => 'application/merge-patch+json' },
            body => '{}')->{status}, 200, '+json types are fine');

$r = $t->http(POST => '/api/echo', headers => \%json,
              body => '{"x":"' . ('a' x (10 * 1024 * 1024)) . '"}');
check('10 MB body', $r, 413, 'VALIDATION_ERROR');

check('unknown path', $t->http(GET => '/api/no/such/thing'), 404, 'NOT_FOUND');
check('wrong method', $t->http(GET => '/api/echo'), 405, 'VALIDATION_ERROR');
check('POST to health',
      $t->http(POST => '/api/health/live', headers => \%json, body => '{}'), 405, 'VALIDATION_ERROR');

$r = $t->http(HEAD => '/api/health/live');
is($r->{status}, 200, 'HEAD is answered');
is($r->{content}, '', 'without a body');

$t->stop;
done_testing;
