// The frame texture as uploaded (RGBA8, row 0 at the top); alpha is forced opaque.
uniform sampler2D frame;
varying vec2 uv;

void main() {
  gl_FragColor = vec4(texture2D(frame, uv).rgb, 1.0);
}
