package Crest::Trending;
# Helpers of the scraper tests (t/07*-scraper-*.t): answers shaped like
# YouTube's, Apify's and Reddit's, and running one trending-refresh job.
use strict;
use warnings;
use Exporter 'import';
use JSON::PP;
use Time::HiRes qw(sleep);
use Crest::Bull qw(crest_queue wait_until);

our @EXPORT_OK = qw(yt_video yt_list yt_quota_error reddit_listing tiktok_item
                    x_item refresh scraper_env);

sub yt_video {
    my ($id, %o) = @_;
    return {
        kind => 'youtube#video', etag => "e$id", id => $id,
        snippet => {
            publishedAt => '2026-11-20T10:00:00Z', channelId => "UC$id",
            title => $o{title} // "Video $id #Music #live",
            description => $o{description} // "about $id #crest",
            thumbnails => { default => { url => "https://i.ytimg.com/vi/$id/default.jpg" },
                            high    => { url => "https://i.ytimg.com/vi/$id/hqdefault.jpg" } },
            channelTitle => "Channel $id", tags => ['t1'], categoryId => '10',
        },
        contentDetails => { duration => $o{duration} // 'PT4M13S' },
        statistics => { viewCount => "" . ($o{views} // 1000),
                        likeCount => "" . ($o{likes} // 10),
                        commentCount => "" . ($o{comments} // 1) },
    };
}

sub yt_list {
    my ($items, %o) = @_;
    return { kind => 'youtube#videoListResponse', etag => 'x',
             ($o{next} ? (nextPageToken => $o{next}) : ()),
             pageInfo => { totalResults => 200, resultsPerPage => scalar @$items },
             items => $items };
}

sub yt_quota_error {
    return { error => { code => 403,
        message => 'The request cannot be completed because you have exceeded your <a href="/youtube/v3/getting-started#quota">quota</a>.',
        errors => [{ message => 'quota exceeded', domain => 'youtube.quota',
                     reason => 'quotaExceeded' }] } };
}

sub reddit_listing {
    my @posts = @_;
    return { kind => 'Listing', data => { after => 't3_zzz', dist => scalar @posts,
        children => [ map { { kind => 't3', data => {
            id => $_->{id}, title => "Post $_->{id} #clip", score => $_->{score} // 5,
            num_comments => 3, created_utc => 1763600000, author => "user$_->{id}",
            permalink => "/r/videos/comments/$_->{id}/post/", url => "https://v.redd.it/$_->{id}",
            is_video => JSON::PP::true, over_18 => JSON::PP::false, thumbnail => 'default',
            media => { reddit_video => { duration => 42 } } } } } @posts ] } };
}

sub tiktok_item {
    my ($id, %o) = @_;
    return { id => $id, text => "dance $id #fyp #Dance", webVideoUrl => "https://www.tiktok.com/\@u$id/video/$id",
             playCount => $o{views} // 5000, diggCount => 50, commentCount => 5,
             createTimeISO => '2026-11-21T12:00:00.000Z',
             authorMeta => { name => "u$id", nickName => "User $id" },
             videoMeta => { duration => 15, coverUrl => "https://p16.tiktokcdn.com/$id.jpeg" },
             hashtags => [{ name => 'fyp' }, { name => 'dance' }] };
}

sub x_item {
    my ($id) = @_;
    return { id => "$id", url => "https://x.com/a/status/$id", fullText => "post $id #news",
             viewCount => 900, likeCount => 9, replyCount => 2,
             createdAt => 'Fri Nov 21 12:00:00 +0000 2026',
             author => { userName => 'a', name => 'A' } };
}

# Environment of a worker talking only to the given fakes.
sub scraper_env {
    my (%o) = @_;
    my $none = 'http://127.0.0.1:1';
    return (
        CREST_QUEUES => 'trending-refresh',
        CREST_TRENDING_YOUTUBE_BASE_URL => $o{youtube} // $none,
        CREST_TRENDING_YOUTUBE_API_KEY => 'test-key',
        CREST_TRENDING_APIFY_BASE_URL => $o{apify} // $none,
        CREST_TRENDING_APIFY_TOKEN => 'apify-token',
        CREST_TRENDING_REDDIT_BASE_URL => $o{reddit} // $none,
        CREST_TRENDING_BACKOFF_MS => 50,
        CREST_TRENDING_BACKOFF_CAP_MS => 200,
        CREST_TRENDING_TIMEOUT_MS => 5000,
        no_proxy => '*', NO_PROXY => '*',
        %{ $o{more} // {} },
    );
}

# Adds a trending-refresh job and waits for it to settle: the job as JSON
# (returnvalue, failedReason, ...) with its final state in {state}.
sub refresh {
    my ($t, $data, $secs) = @_;
    my ($rc, $id) = crest_queue($t, 'add', 'trending-refresh', 'refresh',
                                encode_json($data));
    die "crest-queue add: $id" if $rc;
    my $state;
    wait_until(sub {
        (undef, $state) = crest_queue($t, 'state', 'trending-refresh', $id);
        $state eq 'completed' || $state eq 'failed';
    }, $secs // 20);
    my (undef, $json) = crest_queue($t, 'get', 'trending-refresh', $id);
    my $job = eval { decode_json($json) } // { raw => $json };
    $job->{state} = $state;
    $job->{ret} = eval { ref $job->{returnvalue} ? $job->{returnvalue}
                         : decode_json($job->{returnvalue} // 'null') };
    return $job;
}

1;
