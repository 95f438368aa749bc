// The smallest JavaScript worker: a wasi:http/proxy component (built by ComponentizeJS) that
// answers from the edge with the path it was asked for.
addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  return new Response(`hello from js: ${url.pathname}${url.search}\n`, {
    headers: { 'content-type': 'text/plain', 'x-worker': 'hello-js' },
  });
}
