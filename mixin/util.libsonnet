// SPDX-License-Identifier: Apache-2.0
{
  // 'a="1",b="2"' from selector fragments, the empty ones left out.
  selector(a, b=''):: std.join(',', [p for p in [a, b] if p != '']),
}
