# The declarative (__DATA__ blocks) side of the harness, on plain nginx.
use strict;
use warnings;
use Crest::Test;

Crest::Test::set_options(no_module => 1);

# Planning by hand: one test per block, one for nginx's shutdown, plus ours.
# (Without a plan, run_blocks() plans blocks() + 1 itself.)
plan tests => blocks() + 1 + 1;

my $seen_hook = 0;
run_blocks(before_each => sub {
    my ($t, $block) = @_;
    $seen_hook++;
    # Hooks get the live instance, e.g. to seed data a request depends on.
    $t->redis_cli('SET', 'hook', $block->{name});
});

is $seen_hook, blocks() - 1, 'before_each ran for every block but the skipped one';

__DATA__

=== TEST 1: plain return
--- config
location = /t { return 200 "ok"; }
--- request
GET /t
--- response_body chomp
ok
--- no_error_log
[warn]



=== TEST 2: one-line sections, headers present and absent
--- config
location = /t {
    add_header X-Test yes always;
    return 404;
}
--- request
GET /t
--- error_code: 404
--- response_headers
X-Test: yes
Content-Type: re:^text/html
!X-Absent



=== TEST 3: JSON subset, http_config and more_headers
--- http_config
map $http_x_who $who { default "nobody"; "me" "you"; }
--- config
location = /j {
    default_type application/json;
    return 200 '{"who":"$who","ok":true,"n":3,"items":[{"a":1,"b":2},{"a":3}],"extra":null}';
}
--- request
GET /j
--- more_headers
X-Who: me
--- response_json
{"who": "you", "ok": true, "n": 3, "items": [{"a": 1}, {"a": 3}]}



=== TEST 4: error_log lines, substring and regex
--- config
location / { root $TEST_NGINX_HTML_DIR; }
--- request
GET /missing.html
--- error_code: 404
--- error_log
No such file or directory
re:open\(\) ".*/html/missing\.html" failed
--- no_error_log
[alert]



=== TEST 5: request body, variables, two workers
--- workers: 2
--- config
location = /p {
    return 200 "port=$TEST_NGINX_SERVER_PORT method=$request_method len=$content_length";
}
--- request
POST /p
hello world
--- response_body_like: ^port=\d+ method=POST len=11$



=== TEST 6: request_body section and eval filter
--- config
location = /p { return 200 "len=$content_length"; }
--- request
PUT /p
--- request_body eval
"x" x 100
--- response_body eval
"len=100"



=== TEST 7: same config again: no restart
--- config
location = /p { return 200 "len=$content_length"; }
--- request
PUT /p
--- request_body eval
"x" x 100
--- response_body: len=100



=== TEST 8: skipped
--- SKIP
--- config
location = /never { return 500; }
--- request
GET /never
