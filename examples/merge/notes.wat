;; A custom merge for a keyed topic of notes (docs/KEYED.md, "Custom merges"): when two
;; tablets edit the same note concurrently, keep the longer text (more of the work), ties
;; by the later version in dot order; a deletion concurrent with an edit loses to the edit,
;; and only deletions answer absent.
;;
;; Load it with `conflict = "custom"` and `merge = "examples/merge/notes.wat"` in a topic
;; of outpost.toml. Input at ptr (little-endian): key_len u32, key, n u32, then n versions
;; of { origin u64, seq u64, hlc u64, flags u8 (bit 1: deletion), value_len u32, value }.
;; merge returns (answer_ptr << 32) | answer_len, or -1 for absent.
(module
  (memory (export "memory") 1)
  ;; One bump allocator from the first page's end: a call gets a fresh instance, so
  ;; nothing is ever freed.
  (global $next (mut i32) (i32.const 1024))
  (func (export "alloc") (param $len i32) (result i32)
    (local $at i32)
    (local $need i32)
    (local.set $at (global.get $next))
    (global.set $next (i32.add (local.get $at) (local.get $len)))
    ;; Grow the memory to hold it (one page is 64 KiB).
    (local.set $need
      (i32.sub
        (i32.shr_u (i32.add (global.get $next) (i32.const 65535)) (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.lt_s (memory.grow (local.get $need)) (i32.const 0)) (then unreachable))))
    (local.get $at))
  (func (export "merge") (param $ptr i32) (param $len i32) (result i64)
    (local $p i32)
    (local $n i32)
    (local $i i32)
    (local $flags i32)
    (local $vlen i32)
    (local $best_at i32)
    (local $best_len i32)
    (local $found i32)
    ;; Skip the key.
    (local.set $p (i32.add (i32.add (local.get $ptr) (i32.const 4)) (i32.load (local.get $ptr))))
    (local.set $n (i32.load (local.get $p)))
    (local.set $p (i32.add (local.get $p) (i32.const 4)))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        ;; origin, seq and hlc (24 bytes), then flags.
        (local.set $flags (i32.load8_u (i32.add (local.get $p) (i32.const 24))))
        (local.set $vlen (i32.load (i32.add (local.get $p) (i32.const 25))))
        (local.set $p (i32.add (local.get $p) (i32.const 29)))
        ;; A value at least as long as the best so far wins (later dots come later).
        (if (i32.and
              (i32.eqz (i32.and (local.get $flags) (i32.const 2)))
              (i32.or (i32.eqz (local.get $found)) (i32.ge_u (local.get $vlen) (local.get $best_len))))
          (then
            (local.set $found (i32.const 1))
            (local.set $best_at (local.get $p))
            (local.set $best_len (local.get $vlen))))
        (local.set $p (i32.add (local.get $p) (local.get $vlen)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (if (i32.eqz (local.get $found)) (then (return (i64.const -1))))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $best_at)) (i64.const 32))
      (i64.extend_i32_u (local.get $best_len)))))
