#!/usr/bin/env bash
# Installs what the browser reading station renders with, where that is possible: Mesa's EGL and its
# software OpenGL (VTK draws the slice views offscreen through EGL; no X server, no Xvfb), and Debian's
# chromium for its end-to-end test. Never fails the build: without them the station's tests are skipped
# and say why.
packages=()
for package in libegl-mesa0 libgl1-mesa-dri; do
  dpkg -s "$package" >/dev/null 2>&1 || packages+=("$package")
done
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
[ ${#packages[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing ${packages[*]} for the reading station (apt-get)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null) \
    || echo "${packages[*]} could not be installed; the reading station's tests will be skipped."
else
  echo "${packages[*]} missing and apt-get is not usable here; the reading station's tests will be skipped."
fi
exit 0
