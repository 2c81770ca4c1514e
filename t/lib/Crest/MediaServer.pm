package Crest::MediaServer;

# A tiny static file server for the download tests (core Perl only), on
# 127.0.0.1 and an ephemeral port, in a process of its own:
#
#   my $srv = Crest::MediaServer->new(root => $dir, rate => 200_000);
#   $srv->start;
#   $srv->url('/clip.mp4');        # full speed
#   $srv->url('/slow/clip.mp4');   # the same file at `rate` bytes/second
#   $srv->requests;                # "METHOD PATH RANGE" lines so far
#   $srv->stop;                    # by pid (its connection children too)
#
#   Crest::MediaServer->new(root => $dir, redirects => { '/go' => 'http://...' },
#                           addr => '127.0.0.2');
#
# GET and HEAD, single byte ranges (206 with Content-Range, 416 past the
# end), 404 for anything not a plain file under root; /status/NNN/...
# answers status NNN; a path listed in redirects answers 302 with that
# Location (set before start).  Each connection is
# served by a child of its own so that a throttled download never holds up
# another request; `Connection: close` always.

use strict;
use warnings;

use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep);

my %TYPES = (mp4 => 'video/mp4', webm => 'video/webm', m4a => 'audio/mp4',
             mp3 => 'audio/mpeg', jpg => 'image/jpeg', txt => 'text/plain',
             html => 'text/html; charset=utf-8');

sub new {
    my ($class, %o) = @_;
    return bless { root => $o{root}, rate => $o{rate} // 200_000,
                   addr => $o{addr} // '127.0.0.1',
                   redirects => $o{redirects} // {},
                   chunk => $o{chunk} // 16_384,
                   log => $o{log} // "$o{root}/requests.log" }, $class;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub url  { "http://$_[0]{addr}:$_[0]{port}$_[1]" }

sub requests {
    my $self = shift;
    open my $fh, '<', $self->{log} or return ();
    chomp(my @l = <$fh>);
    return @l;
}

sub start {
    my $self = shift;
    my $sock = IO::Socket::INET->new(LocalAddr => $self->{addr}, LocalPort => 0,
                                     Listen => 32, ReuseAddr => 1, Proto => 'tcp')
        or die "MediaServer: listen: $!\n";
    $self->{port} = $sock->sockport;
    my $pid = fork // die "MediaServer: fork: $!\n";
    if ($pid == 0) {
        eval { $self->_serve($sock) };
        POSIX::_exit(0);
    }
    close $sock;
    $self->{pid} = $pid;
    return $self;
}

sub stop {
    my $self = shift;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    waitpid($pid, 0);
}

sub DESTROY { $_[0]->stop if $_[0]{pid} && $$ != ($_[0]{child_of} // 0) }

sub _serve {
    my ($self, $sock) = @_;
    my %kids;
    local $SIG{TERM} = sub { kill 'KILL', keys %kids; POSIX::_exit(0) };
    local $SIG{CHLD} = sub {
        while ((my $k = waitpid(-1, POSIX::WNOHANG())) > 0) { delete $kids{$k} }
    };
    $self->{child_of} = $$;
    while (1) {
        my $c = $sock->accept or next;
        my $pid = fork;
        if (!defined $pid) { close $c; next }
        if ($pid == 0) {
            $SIG{TERM} = 'DEFAULT';
            $SIG{PIPE} = 'IGNORE';
            close $sock;
            eval { $self->_one($c) };
            POSIX::_exit(0);
        }
        $kids{$pid} = 1;
        close $c;
    }
}

sub _one {
    my ($self, $c) = @_;
    local $/ = "\r\n";
    my $req = <$c> // return;
    my ($method, $path) = $req =~ m{^(GET|HEAD) (\S+) HTTP/1\.[01]\r\n\z} or do {
        print $c "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return;
    };
    my %h;
    while (defined(my $l = <$c>)) {
        last if $l eq "\r\n";
        $h{lc $1} = $2 if $l =~ /^([^:]+):\s*(.*?)\r\n\z/;
    }
    $path =~ s/[?#].*//;
    my $slow = $path =~ s{^/slow/}{/};
    my $range = $h{range} // '';
    if (open my $lf, '>>', $self->{log}) { print $lf "$method $path $range\n"; close $lf }

    if (defined(my $to = $self->{redirects}{$path})) {
        print $c "HTTP/1.1 302 Found\r\nLocation: $to\r\nContent-Length: 0\r\n"
               . "Connection: close\r\n\r\n";
        return;
    }

    if ($path =~ m{^/status/(\d{3})\b}) {      # a canned error status
        print $c "HTTP/1.1 $1 Status $1\r\nContent-Type: text/plain\r\n"
               . "Content-Length: 6\r\nConnection: close\r\n\r\nerror\n";
        return;
    }

    my $file = "$self->{root}$path";
    my $fh;
    if ($path =~ m{(?:^|/)\.\.(?:/|\z)} || !-f $file || !open($fh, '<:raw', $file)) {
        print $c "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
               . "Content-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
        return;
    }
    my $size = -s $file;
    my ($from, $to, $status) = (0, $size - 1, '200 OK');
    my $extra = '';
    if ($range =~ /^bytes=(\d*)-(\d*)\z/ && ($1 ne '' || $2 ne '')) {
        ($from, $to) = $1 eq '' ? ($size - $2, $size - 1) : ($1, $2 eq '' ? $size - 1 : $2);
        $to = $size - 1 if $to > $size - 1;
        if ($from < 0 || $from > $to) {
            print $c "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */$size\r\n"
                   . "Content-Length: 0\r\nConnection: close\r\n\r\n";
            return;
        }
        $status = '206 Partial Content';
        $extra = "Content-Range: bytes $from-$to/$size\r\n";
    }
    my ($ext) = $path =~ /\.(\w+)\z/;
    my $type = $TYPES{ lc($ext // '') } // 'application/octet-stream';
    my $len = $to - $from + 1;
    print $c "HTTP/1.1 $status\r\nContent-Type: $type\r\nContent-Length: $len\r\n"
           . "Accept-Ranges: bytes\r\n${extra}Connection: close\r\n\r\n";
    return if $method eq 'HEAD';

    seek $fh, $from, 0;
    my $left = $len;
    my $chunk = $self->{chunk};
    while ($left > 0) {
        my $n = read($fh, my $buf, $left < $chunk ? $left : $chunk) or last;
        print $c $buf or last;
        $left -= $n;
        sleep($n / $self->{rate}) if $slow && $self->{rate};
    }
}

1;
