// Klaro configuration of a site (loaded with data-klaro-config="klaroConfig").
var klaroConfig = {
    version: 1,
    elementID: 'klaro',
    storageMethod: 'cookie',
    cookieName: 'klaro',
    cookieExpiresAfterDays: 120,
    cookieDomain: '.contact.example.com',
    default: false,
    mustConsent: false,
    translations: {
        en: { privacyPolicyUrl: '/privacy', purposes: { analytics: 'Analytics' } },
    },
    services: [
        {
            name: 'session',
            title: 'Sign-in session',
            purposes: ['functional'],
            required: true,
            cookies: ['__Host-session', [/^lb_/, '/', '.contact.example.com']],
        },
        {
            name: 'googleAnalytics',
            title: 'Google Analytics',
            purposes: ['analytics'],
            cookies: [
                [/^_ga(_.*)?$/, '/', '.contact.example.com'], // delete already set cookies
                '_gid',
            ],
            callback: function(consent, service) {
                if (consent) { window.dataLayer.push({event: 'consent'}); }
            },
            required: false,
        },
        {
            name: 'hubspot',
            purposes: ['marketing'],
            cookies: ['^__hs', /hubspotutk/i],
            onAccept: `console.log("accepted")`,
        },
    ],
};
