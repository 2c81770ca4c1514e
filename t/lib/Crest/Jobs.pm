package Crest::Jobs;

# Helpers for the job endpoint tests (t/06*-jobs-*.t): accounts, and a small
# Server-Sent Events client that reads a stream event by event.

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::IP;
use JSON::PP ();
use Time::HiRes qw(time);

our @EXPORT_OK = qw(session bearer sse_open sse_next sse_until sse_close
                    row);

my $JSON = JSON::PP->new->utf8->allow_nonref;

# session($t, $email) — registers an account; returns {token, id}.
sub session {
    my ($t, $email) = @_;
    my $r = $t->http(POST => '/api/auth/register',
                     json => { email => $email, password => 'password1' });
    die "register $email: $r->{status} $r->{content}\n" unless $r->{status} == 201;
    return { token => $r->{json}{data}{accessToken}, id => $r->{json}{data}{user}{id} };
}

sub bearer { return { Authorization => "Bearer $_[0]{token}" } }

# row($t, $id) — the job's row: {status, attempts, result, error, queued}.
sub row {
    my ($t, $id) = @_;
    my ($line) = $t->psql("SELECT status, attempts, coalesce(result::text, ''),
        coalesce(error, ''), enqueued_at IS NOT NULL FROM jobs WHERE id = '$id'");
    return undef unless defined $line;
    my @f = split /\|/, $line, -1;
    return { status => $f[0], attempts => $f[1], result => $f[2],
             error => $f[3], enqueued => $f[4] };
}

# sse_open($t, $path, $session, timeout => s) — sends the request, reads
# the response head; returns a stream {status, headers, body (for a non-2xx
# answer)}.
sub sse_open {
    my ($t, $path, $who, %o) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $t->port,
                                Proto => 'tcp', Timeout => 5)
        or die "connect: $!\n";
    $s->autoflush(1);
    my $auth = $who ? "Authorization: Bearer $who->{token}\r\n" : '';
    print {$s} "GET $path HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n"
             . "${auth}Connection: close\r\n\r\n";
    my $st = { sock => $s, raw => '', text => '', events => [], ended => 0 };
    my $deadline = time + ($o{timeout} // 10);
    while ($st->{raw} !~ /\r\n\r\n/) {
        _fill($st, $deadline - time) or die "no response head for $path\n";
    }
    my ($head, $rest) = split /\r\n\r\n/, $st->{raw}, 2;
    $st->{raw} = $rest;
    my ($status_line, @lines) = split /\r\n/, $head;
    ($st->{status}) = $status_line =~ m{^HTTP/1\.1 (\d+)};
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $st->{headers}{ lc $k } = $v;
    }
    $st->{chunked} = ($st->{headers}{'transfer-encoding'} // '') =~ /chunked/i;
    return $st;
}

sub _fill {
    my ($st, $secs) = @_;
    return 0 if $st->{eof} || $secs <= 0;
    my $rin = '';
    vec($rin, fileno($st->{sock}), 1) = 1;
    my $n = select(my $rout = $rin, undef, undef, $secs);
    return 0 if $n <= 0;
    my $r = sysread($st->{sock}, my $buf, 65536);
    if (!$r) {
        $st->{eof} = 1;
        return 0;
    }
    $st->{raw} .= $buf;
    return 1;
}

# Moves whole chunks from raw to text; sets ended at the last chunk.
sub _dechunk {
    my $st = shift;
    unless ($st->{chunked}) {
        $st->{text} .= $st->{raw};
        $st->{raw} = '';
        $st->{ended} = 1 if $st->{eof};
        return;
    }
    while ($st->{raw} =~ /\A([0-9a-fA-F]+)\r\n/) {
        my $len = hex $1;
        my $hl = length($1) + 2;
        last if length($st->{raw}) < $hl + $len + 2;
        $st->{text} .= substr($st->{raw}, $hl, $len);
        substr($st->{raw}, 0, $hl + $len + 2, '');
        if ($len == 0) {
            $st->{ended} = 1;
            last;
        }
    }
}

# sse_next($st, $secs) — the next event {event, data (decoded), raw}, a
# comment {comment => text}, or undef (timeout or end of stream).
sub sse_next {
    my ($st, $secs) = @_;
    my $deadline = time + ($secs // 10);
    while (1) {
        _dechunk($st);
        if ($st->{text} =~ s/\A(.*?)\n\n//s) {
            my $block = $1;
            if ($block =~ /\A:\s?(.*)\z/s) {
                return { comment => $1 };
            }
            my %e = (raw => $block);
            my @data;
            for my $line (split /\n/, $block) {
                my ($k, $v) = $line =~ /^([^:]*):\s?(.*)$/ or next;
                if ($k eq 'data') { push @data, $v } else { $e{$k} = $v }
            }
            $e{data_text} = join "\n", @data;
            $e{data} = eval { $JSON->decode($e{data_text}) };
            return \%e;
        }
        return undef if $st->{ended};
        return undef unless _fill($st, $deadline - time);
    }
}

# sse_until($st, $name, $secs) — events (comments skipped) up to and
# including the first named $name; the list so far if the stream ends or
# the time passes first.
sub sse_until {
    my ($st, $name, $secs) = @_;
    my $deadline = time + ($secs // 10);
    my @got;
    while (time < $deadline) {
        my $e = sse_next($st, $deadline - time) // last;
        next if exists $e->{comment};
        push @got, $e;
        last if $e->{event} eq $name;
    }
    return @got;
}

sub sse_close { close $_[0]{sock} }

1;
