// Renders standard input, GitHub-flavoured Markdown, as HTML on standard
// output with marked (gfm: true, GitHub's dialect: tables, fenced code).
// commands/markdown_render_test.go renders bes's Markdown documents with it;
// .ci/run installs marked here (npm ci, from package-lock.json).
import { marked } from 'marked';

let input = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) input += chunk;
process.stdout.write(marked.parse(input, { gfm: true }));
