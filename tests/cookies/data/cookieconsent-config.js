import 'https://cdn.jsdelivr.net/gh/orestbida/cookieconsent@3.1.0/dist/cookieconsent.umd.js';

CookieConsent.run({
    cookie: { name: 'cc_cookie', expiresAfterDays: 182 },
    guiOptions: { consentModal: { layout: 'box' } },
    onConsent: ({cookie}) => { console.log(cookie); },
    categories: {
        necessary: {
            enabled: true,
            readOnly: true,
            services: {
                session: { label: 'Sign-in session', cookies: [{ name: '__Host-session' }] },
            },
        },
        analytics: {
            autoClear: {
                cookies: [
                    { name: /^_ga/ },
                    { name: '_gid' },
                ],
            },
            services: {
                ga: {
                    label: 'Google Analytics',
                    onAccept: () => {},
                    onReject: () => {},
                    cookies: [{ name: /^_ga/ }],
                },
            },
        },
        ads: {},
    },
    language: { default: 'en', translations: { en: './en.json' } },
});
