package Crest::S3;

# s3rver (the npm package pinned in t/s3/package-lock.json, installed by
# `make deps`) as the S3-compatible server of the storage tests, on
# 127.0.0.1 and a port of its own choosing, with one bucket, in a process
# of its own:
#
#   my $s3 = Crest::S3->new(dir => $t->dir . '/s3', bucket => 'media')->start;
#   $s3->endpoint;                 # http://127.0.0.1:PORT
#   $s3->env;                      # CREST_STORAGE=s3 and the CREST_S3_* keys
#   $s3->get($key);                # (status, body) of an unsigned GET
#   $s3->presign($key, 60);        # a SigV4 query-signed GET URL
#   $s3->objects;                  # keys in the bucket
#   $s3->stop;                     # by pid
#
# What s3rver 3.7.1 checks: the access key id must be one it knows
# (S3RVER), x-amz-content-sha256 must be present and well formed; it does
# NOT verify SigV4 signatures (its code: "Signature version 4 calculation is
# unimplemented") nor payload hashes.  So these tests show the wire
# protocol (paths, multipart, ETags, error answers), not that signatures
# are right: presign() here and libcurl in the worker are two independent
# signers, and the signature itself is only checked by a real S3.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256 hmac_sha256_hex sha256_hex);
use HTTP::Tiny;
use POSIX ();
use Time::HiRes qw(sleep time);
use Cwd qw(abs_path);
use File::Basename qw(dirname);

my $REPO = abs_path(dirname(__FILE__) . '/../../..');
my $BIN  = "$REPO/t/s3/node_modules/s3rver/bin/s3rver.js";

sub available { -f $BIN }

sub new {
    my ($class, %o) = @_;
    return bless { dir => $o{dir}, bucket => $o{bucket} // 'media',
                   key_id => 'S3RVER', secret => 'S3RVER',
                   region => 'us-east-1' }, $class;
}

sub bucket   { $_[0]{bucket} }
sub port     { $_[0]{port} }
sub endpoint { "http://127.0.0.1:$_[0]{port}" }
sub pid      { $_[0]{pid} }

sub env {
    my ($self, %more) = @_;
    return (CREST_STORAGE              => 's3',
            CREST_S3_ENDPOINT          => $self->endpoint,
            CREST_S3_BUCKET            => $self->{bucket},
            CREST_S3_REGION            => $self->{region},
            CREST_S3_ACCESS_KEY_ID     => $self->{key_id},
            CREST_S3_SECRET_ACCESS_KEY => $self->{secret},
            CREST_STORAGE_SCRATCH      => "$self->{dir}/scratch",
            %more);
}

sub start {
    my $self = shift;
    die "s3rver is not installed (make deps)\n" unless available();
    my $data = "$self->{dir}/data";
    system('mkdir', '-p', $data) == 0 or die "S3: mkdir $data\n";
    my $log = "$self->{dir}/s3rver.log";
    my $pid = fork // die "S3: fork: $!\n";
    if ($pid == 0) {
        open STDOUT, '>', $log;
        open STDERR, '>&', \*STDOUT;
        { exec 'node', $BIN, '-d', $data, '-a', '127.0.0.1', '-p', '0',
               '--configure-bucket', $self->{bucket} };
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    my $deadline = time + 30;
    while (time < $deadline) {
        my $text = -e $log ? do { local @ARGV = ($log); local $/; <> } // '' : '';
        if ($text =~ /listening on 127\.0\.0\.1:(\d+)/) {
            $self->{port} = $1;
            return $self;
        }
        last if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.1;
    }
    my $text = do { local @ARGV = ($log); local $/; <> } // '';
    $self->stop;
    die "S3: s3rver did not start: $text\n";
}

sub stop {
    my $self = shift;
    my $pid = delete $self->{pid} or return;
    kill 'TERM', $pid;
    waitpid($pid, 0);
}

sub DESTROY { $_[0]->stop if $_[0]{pid} }

# An unsigned GET (s3rver serves reads without a signature).
sub get {
    my ($self, $key) = @_;
    my $r = HTTP::Tiny->new(timeout => 30)->get($self->endpoint . "/$self->{bucket}/$key");
    return ($r->{status}, $r->{content});
}

# Keys in the bucket (ListObjectsV2; s3rver accepts it unsigned).
sub objects {
    my $self = shift;
    my $r = HTTP::Tiny->new(timeout => 30)->get(
        $self->endpoint . "/$self->{bucket}?list-type=2&max-keys=1000");
    die "S3: list: $r->{status}\n" unless $r->{success};
    return sort map { s/&amp;/&/gr } $r->{content} =~ m{<Key>([^<]*)</Key>}g;
}

sub _uri_escape {
    my ($s, $slash) = @_;
    $s =~ s{([^A-Za-z0-9\-._~/])}{sprintf('%%%02X', ord $1)}ge;
    $s =~ s{/}{%2F}g unless $slash;
    return $s;
}

# A presigned GET (SigV4, query string, path style) as the edge makes them.
sub presign {
    my ($self, $key, $expires) = @_;
    my @t = gmtime(time);
    my $date = POSIX::strftime('%Y%m%d', @t);
    my $stamp = POSIX::strftime('%Y%m%dT%H%M%SZ', @t);
    my $scope = "$date/$self->{region}/s3/aws4_request";
    my $host = "127.0.0.1:$self->{port}";
    my $path = "/$self->{bucket}/" . _uri_escape($key, 1);
    my %q = ('X-Amz-Algorithm' => 'AWS4-HMAC-SHA256',
             'X-Amz-Credential' => "$self->{key_id}/$scope",
             'X-Amz-Date' => $stamp, 'X-Amz-Expires' => $expires // 300,
             'X-Amz-SignedHeaders' => 'host');
    my $query = join '&', map { _uri_escape($_) . '=' . _uri_escape($q{$_}) } sort keys %q;
    my $creq = join "\n", 'GET', $path, $query, "host:$host", '', 'host', 'UNSIGNED-PAYLOAD';
    my $sts = join "\n", 'AWS4-HMAC-SHA256', $stamp, $scope, sha256_hex($creq);
    my $k = hmac_sha256($date, "AWS4$self->{secret}");
    $k = hmac_sha256($self->{region}, $k);
    $k = hmac_sha256('s3', $k);
    $k = hmac_sha256('aws4_request', $k);
    return "http://$host$path?$query&X-Amz-Signature=" . hmac_sha256_hex($sts, $k);
}

1;
