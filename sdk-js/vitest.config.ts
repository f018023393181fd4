import { defineConfig } from 'vitest/config';

// Unit tests: happy-dom, no network, gated scripts are never fetched or run.
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    environment: 'happy-dom',
    environmentOptions: {
      happyDOM: {
        url: 'https://shop.example.com/',
        // happy-dom 21 neither evaluates scripts nor loads iframes by default
        settings: { disableJavaScriptFileLoading: true, handleDisabledFileLoadingAsSuccess: true },
      },
    },
    // note: happy-dom prints a NotSupportedError for each iframe it does not load; expected
    restoreMocks: true,
    unstubGlobals: true,
  },
});
