// The video frame on a quad that fills the viewport; the view sets the viewport to the
// letterboxed rectangle. No #version line: the view prepends GLSL 1.20 or GLSL ES 1.00 to match
// its context.
attribute vec2 position;
attribute vec2 texcoord;
varying vec2 uv;

void main() {
  uv = texcoord;
  gl_Position = vec4(position, 0.0, 1.0);
}
