package Crest::FakeHTTP;
# A tiny scripted HTTP/1.1 server in core Perl for tests that stand in for
# outside APIs (YouTube, Apify, Reddit...).  It runs in a forked child on
# 127.0.0.1 and a free port, answers one request per connection
# (Connection: close), and:
#
#   - answers from a script of routes, each {path, query (a substring the
#     query must contain, optional), responses => [...]}; the first route
#     whose path equals the request's and whose query matches is used, its
#     responses in turn, the last one repeating.  A response is {status,
#     headers => {...}, body => "text" or json => data, delay_ms}.
#     set_routes() replaces the script (the server reloads it and starts
#     each route from its first response again);
#   - records every request (method, path, query, headers, body, at) as a
#     JSON line: requests() returns them, optionally only those of a path
#     (a body that is not UTF-8 comes as body_base64 instead of body).
#
#   my $f = Crest::FakeHTTP->new(dir => $t->dir . '/fake-yt');
#   $f->set_routes([{ path => '/v', responses => [{ status => 500 }] }]);
#   $f->start;  ...  $f->url . '/v';  ...  $f->stop;
use strict;
use warnings;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use File::Path qw(make_path);
use MIME::Base64 ();

my %REASON = (200 => 'OK', 201 => 'Created', 204 => 'No Content',
              400 => 'Bad Request', 401 => 'Unauthorized', 403 => 'Forbidden',
              404 => 'Not Found', 408 => 'Request Timeout',
              429 => 'Too Many Requests', 500 => 'Internal Server Error',
              502 => 'Bad Gateway', 503 => 'Service Unavailable');

sub new {
    my ($class, %o) = @_;
    my $self = bless { dir => $o{dir} }, $class;
    make_path($self->{dir});
    $self->set_routes($o{routes} // []);
    open my $fh, '>', "$self->{dir}/requests.jsonl" or die $!;
    close $fh;
    return $self;
}

sub port { $_[0]{port} }
sub url  { "http://127.0.0.1:$_[0]{port}" }

sub set_routes {
    my ($self, $routes) = @_;
    my $tmp = "$self->{dir}/routes.json.tmp";
    open my $fh, '>', $tmp or die $!;
    print $fh JSON::PP->new->canonical->encode({ gen => ++$self->{gen}, routes => $routes });
    close $fh;
    rename $tmp, "$self->{dir}/routes.json" or die $!;
}

sub requests {
    my ($self, $path) = @_;
    open my $fh, '<', "$self->{dir}/requests.jsonl" or return ();
    my @r;
    while (my $l = <$fh>) {
        my $r = eval { decode_json($l) } or next;
        push @r, $r if !defined $path || $r->{path} eq $path;
    }
    return @r;
}

sub clear_requests {
    open my $fh, '>', "$_[0]{dir}/requests.jsonl" or die $!;
    close $fh;
}

sub start {
    my $self = shift;
    my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                    Listen => 64, ReuseAddr => 1, Proto => 'tcp')
        or die "FakeHTTP: listen: $!";
    $self->{port} = $srv->sockport;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $self->_serve($srv);
        POSIX::_exit(0);
    }
    close $srv;
    $self->{pid} = $pid;
    $self->{owner_pid} = $$;
    return $self;
}

sub stop {
    my $self = shift;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

sub DESTROY { $_[0]->stop if $_[0]{pid} && ($_[0]{owner_pid} // 0) == $$ }

sub _load {
    my ($self, $st) = @_;
    my $f = "$self->{dir}/routes.json";
    my $m = (stat $f)[9] // 0;
    open my $fh, '<', $f or return;
    local $/;
    my $d = eval { decode_json(<$fh>) } or return;
    if (!$st->{routes} || $d->{gen} != $st->{gen}) {
        %$st = (gen => $d->{gen}, routes => $d->{routes}, next => {});
    }
}

sub _serve {
    my ($self, $srv) = @_;
    $SIG{TERM} = sub { POSIX::_exit(0) };
    my %st;
    while (my $c = $srv->accept) {
        $self->_load(\%st);
        my $req = _read_request($c) or do { close $c; next };
        my ($path, $query) = split /\?/, $req->{target}, 2;
        $query //= '';
        my $rec = { method => $req->{method}, path => $path, query => $query,
                    headers => $req->{headers}, body => $req->{body}, at => time };
        # a body that is not UTF-8 (an upload) would make the line unreadable
        if (!utf8::decode(my $copy = $req->{body})) {
            $rec->{body} = undef;
            $rec->{body_base64} = MIME::Base64::encode_base64($req->{body}, '');
        }
        if (open my $lf, '>>', "$self->{dir}/requests.jsonl") {
            print $lf JSON::PP->new->canonical->encode($rec), "\n";
            close $lf;
        }
        my $resp = { status => 404, json => { error => "no route for $path" } };
        my $i = 0;
        for my $r (@{ $st{routes} }) {
            if ($r->{path} eq $path
                && (!defined $r->{query} || index($query, $r->{query}) >= 0)
                && (!defined $r->{method} || $r->{method} eq $req->{method})) {
                my $n = $st{next}{$i}++;
                my $list = $r->{responses};
                $resp = $list->[ $n < @$list ? $n : $#$list ];
                last;
            }
            $i++;
        }
        sleep($resp->{delay_ms} / 1000) if $resp->{delay_ms};
        my $body = exists $resp->{json}
            ? JSON::PP->new->canonical->encode($resp->{json}) : $resp->{body} // '';
        utf8::encode($body) if utf8::is_utf8($body);
        my $status = $resp->{status} // 200;
        my %h = (%{ $resp->{headers} // {} });
        $h{'Content-Type'} //= 'application/json; charset=UTF-8';
        my $out = "HTTP/1.1 $status " . ($REASON{$status} // 'Status') . "\r\n";
        $out .= "$_: $h{$_}\r\n" for sort keys %h;
        $out .= "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n" . $body;
        print $c $out;
        close $c;
    }
}

sub _read_request {
    my $c = shift;
    my $buf = '';
    local $SIG{ALRM} = sub { die "timeout\n" };
    my $req = eval {
        alarm 10;
        while ($buf !~ /\r\n\r\n/) {
            my $n = sysread $c, $buf, 65536, length $buf;
            return unless $n;
        }
        my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
        my ($line, @h) = split /\r\n/, $head;
        my ($method, $target) = split / /, $line;
        my %h;
        for (@h) { my ($k, $v) = split /:\s*/, $_, 2; $h{lc $k} = $v }
        my $len = $h{'content-length'} // 0;
        while (length $rest < $len) {
            my $n = sysread $c, $rest, $len - length $rest, length $rest;
            last unless $n;
        }
        { method => $method, target => $target, headers => \%h, body => $rest };
    };
    alarm 0;
    return $req;
}

1;
